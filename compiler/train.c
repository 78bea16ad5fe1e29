// train.c: `nnc train MODEL.nn|MODEL.so --data SPEC [options]` (docs/training.md).
//
// The driver loads a compiled model through its generic entry nnc_model_entry()
// (ABI.md §2): a .so is dlopen'ed as it is; a .nn is first compiled by running this
// same executable (`/proc/self/exe MODEL.nn -o CACHE/NAME-HASH.so`) into a cache
// directory keyed by the file's content and the compiler's identity, so a second run
// starts at once. It then loads the data sets with libnnrt's loaders, runs the loop
// (train_loop.c), saves the checkpoint and draws the plot (train_plot.c).
//
// Checkpoints are the model's own safetensors files (ABI.md §3) with one more
// __metadata__ entry, "nnc.train", holding where the run stands (epoch, batch, seed,
// batch size, ...) and the per-epoch history, so that --resume continues exactly.
//
// Exit statuses: 0 done, 1 bad model/data/checkpoint, 2 usage, 130 interrupted.
#include "driver.h"
#include "train.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataset.h"

#define META_KEY "nnc.train"
#define MAX_SAVED_EPOCHS 2000   // the history kept in a checkpoint (for --plot after --resume)

static const char usage_text[] =
    "usage: nnc train MODEL.nn|MODEL.so --data SPEC [options]\n"
    "\n"
    "Trains a model on a data set. A .nn file is compiled first (and cached).\n"
    "\n"
    "options:\n"
    "  --data SPEC       training data (required), one of:\n"
    "                      fashion-mnist[:test]     Debian's dataset-fashion-mnist package\n"
    "                      idx:IMAGES,LABELS        MNIST-style IDX files, gzip or raw\n"
    "                      csv:FILE[,label=COL|last][,header]\n"
    "                      npy:X.npy,Y.npy          Y: class indices or target rows\n"
    "  --test SPEC       test data, evaluated after every epoch (default with\n"
    "                    --data fashion-mnist: its test part)\n"
    "  --epochs N        epochs to run (default 1; with --resume: N more)\n"
    "  --batch B         mini-batch size (default 32)\n"
    "  --lr X            learning rate (default: the model's)\n"
    "  --seed S          initialisation and shuffling seed (default 1)\n"
    "  --threads T       worker threads (default: the model's)\n"
    "  --save CKPT       save a checkpoint (safetensors) at the end\n"
    "  --resume CKPT     continue the run saved in CKPT\n"
    "  --plot FILE.svg   draw the loss and accuracy curves (1-D models: the fitted curve)\n"
    "  --quiet           print only the per-epoch lines\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("nnc: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nnnc: note: see 'nnc train --help'\n", stderr);
    return NN_EXIT_USAGE;
}

// ---- numbers on the command line: the whole string, in range, or a usage error.

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end || errno) return false;
    *out = v;
    return true;
}

static bool parse_positive_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v > 0) || !isfinite(v) || v > 1e30) return false;
    *out = (float)v;
    return true;
}

// ---- the command line

typedef struct TrainArgs {
    const char *model, *data, *test;
    bool        has_epochs, has_batch, has_seed;
} TrainArgs;

// Returns -1 to go on, else an exit status (usage error or --help).
static int parse_args(TrainRun *r, TrainArgs *a, int argc, char **argv) {
    static const char *const with_value[] = { "--data", "--test", "--epochs", "--batch", "--lr",
                                              "--seed", "--threads", "--save", "--resume", "--plot" };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage_text, stdout);
            return NN_EXIT_OK;
        }
        if (!strcmp(arg, "--quiet") || !strcmp(arg, "-q")) {
            r->quiet = true;
            continue;
        }
        if (arg[0] != '-' || !arg[1]) {
            if (a->model) return usage_error("more than one model given: '%s'", arg);
            a->model = arg;
            continue;
        }
        // "--name value" or "--name=value"
        const char *name = arg, *value = NULL;
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *known = NULL;
        for (size_t k = 0; k < NN_COUNTOF(with_value); k++)
            if (strlen(with_value[k]) == name_len && !strncmp(arg, with_value[k], name_len))
                known = with_value[k];
        if (!known) return usage_error("unknown option '%s'", arg);
        name = known;
        if (eq) value = eq + 1;
        else if (i + 1 < argc) value = argv[++i];
        else return usage_error("option '%s' needs a value", name);

        int64_t n;
        if (!strcmp(name, "--data")) a->data = value;
        else if (!strcmp(name, "--test")) a->test = value;
        else if (!strcmp(name, "--save")) r->save_path = value;
        else if (!strcmp(name, "--resume")) r->resume_path = value;
        else if (!strcmp(name, "--plot")) r->plot_path = value;
        else if (!strcmp(name, "--epochs")) {
            if (!parse_i64(value, 0, 1000000000, &n))
                return usage_error("--epochs needs a whole number >= 0, not '%s'", value);
            r->epochs = n;
            a->has_epochs = true;
        } else if (!strcmp(name, "--batch")) {
            if (!parse_i64(value, 1, 1 << 24, &n))
                return usage_error("--batch needs a whole number from 1 to 16777216, not '%s'", value);
            r->batch = (size_t)n;
            a->has_batch = true;
        } else if (!strcmp(name, "--threads")) {
            if (!parse_i64(value, 1, 1024, &n))
                return usage_error("--threads needs a whole number from 1 to 1024, not '%s'", value);
            r->threads = (int)n;
        } else if (!strcmp(name, "--seed")) {
            if (!parse_u64(value, &r->seed))
                return usage_error("--seed needs a whole number >= 0, not '%s'", value);
            a->has_seed = true;
        } else if (!strcmp(name, "--lr")) {
            if (!parse_positive_float(value, &r->lr))
                return usage_error("--lr needs a positive number, not '%s'", value);
            r->has_lr = true;
        }
    }
    if (!a->model) return usage_error("%s", "no model given (a .nn or .so file)");
    if (!a->data) return usage_error("%s", "no training data given (--data SPEC)");
    return -1;
}

// ---- model loading

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

// "dir/fashion.nn" -> "fashion"
static char *model_stem(Arena *a, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return nn_strndup(a, base, n);
}

static bool mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc && errno != EEXIST) return false;
    }
    return !mkdir(path, 0755) || errno == EEXIST;
}

// The cache directory: $XDG_CACHE_HOME/nnc, else ~/.cache/nnc, else a temporary one.
static char *cache_dir(Arena *a) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/') return nn_format(a, "%s/nnc", xdg);
    if (home && home[0] == '/') return nn_format(a, "%s/.cache/nnc", home);
    return nn_format(a, "/tmp/nnc-cache-%ld", (long)getuid());
}

static char *read_whole_file(Arena *a, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = nn_alloc(a, cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            buf = nn_grow_array(a, buf, cap, cap * 2 + 1, 1);
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) return NULL;
    buf[n] = 0;
    *len = n;
    return buf;
}

// Compiles `nn_path` into the cache (unless it is there) and returns the .so path,
// or NULL after printing an error.
// The compiler: the `nnc` beside this executable (nnc itself, or nnc-train,
// which drives training without loading LLVM: see nnc_train_main.c).
static const char *compiler_path(Arena *a) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return "nnc";
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return "nnc";
    slash[1] = '\0';
    return nn_format(a, "%snnc", exe);
}

static const char *compile_cached(TrainRun *r, const char *nn_path) {
    Arena *a = &r->arena;
    size_t len;
    char *text = read_whole_file(a, nn_path, &len);
    if (!text) {
        fprintf(stderr, "nnc: error: cannot open '%s': %s\n", nn_path, strerror(errno ? errno : EIO));
        return NULL;
    }
    // The key: the file's bytes, the version, and the compiler's size and time, so that a
    // rebuilt compiler of the same version does not reuse code an older one generated.
    uint64_t h = nn_fnv1a(NN_FNV1A_BASIS, text, len);
    h = nn_fnv1a(h, NN_VERSION, sizeof NN_VERSION);
    const char *nnc = compiler_path(a);
    struct stat st;
    if (!stat(nnc, &st)) {
        int64_t id[3] = { (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec };
        h = nn_fnv1a(h, id, sizeof id);
    }
    char *dir = cache_dir(a);
    if (!mkdir_p(dir)) {
        fprintf(stderr, "nnc: error: cannot create the cache directory '%s': %s\n", dir, strerror(errno));
        return NULL;
    }
    const char *stem = model_stem(a, nn_path);
    char *so = nn_format(a, "%s/%s-%016llx.so", dir, stem, (unsigned long long)h);
    if (!access(so, R_OK)) return so;

    char *tmp = nn_format(a, "%s/%s-%016llx.tmp%ld.so", dir, stem, (unsigned long long)h, (long)getpid());
    char *tmp_h = nn_format(a, "%s/%s-%016llx.tmp%ld.h", dir, stem, (unsigned long long)h, (long)getpid());
    char *final_h = nn_format(a, "%s/%s-%016llx.h", dir, stem, (unsigned long long)h);
    if (!r->quiet) {
        printf("compiling %s\n", nn_path);
        fflush(stdout);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "nnc: error: cannot start the compiler: %s\n", strerror(errno));
        return NULL;
    }
    if (pid == 0) {
        execl(nnc, "nnc", nn_path, "-o", tmp, "--header", tmp_h, (char *)NULL);
        fprintf(stderr, "nnc: error: cannot run the compiler: %s\n", strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "nnc: error: cannot wait for the compiler: %s\n", strerror(errno));
            return NULL;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(tmp);
        unlink(tmp_h);
        fprintf(stderr, "nnc: error: cannot compile '%s'\n", nn_path);
        return NULL;
    }
    rename(tmp_h, final_h);   // the header is a convenience; the .so is what counts
    if (rename(tmp, so)) {
        fprintf(stderr, "nnc: error: cannot write '%s': %s\n", so, strerror(errno));
        unlink(tmp);
        return NULL;
    }
    return so;
}

static void *g_handle;   // the dlopen'ed model, closed at the end of nn_train_main

static bool load_model(TrainRun *r, const char *path) {
    const char *so = path;
    if (has_suffix(path, ".nn")) {
        so = compile_cached(r, path);
        if (!so) return false;
    }
    if (!strchr(so, '/')) so = nn_format(&r->arena, "./%s", so);   // not a library search
    g_handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!g_handle) {
        fprintf(stderr, "nnc: error: cannot load '%s': %s\n", path, dlerror());
        return false;
    }
    const nnc_model_info *(*entry)(void) = (const nnc_model_info *(*)(void))dlsym(g_handle, "nnc_model_entry");
    if (!entry) {
        fprintf(stderr, "nnc: error: '%s' is not a compiled model: it has no nnc_model_entry\n", path);
        return false;
    }
    const nnc_model_info *info = entry();
    if (!info || info->abi_version != 1) {
        fprintf(stderr, "nnc: error: '%s' has model ABI version %d; this nnc reads version 1\n",
                path, info ? info->abi_version : 0);
        return false;
    }
    if (!info->create || !info->destroy || !info->train_step || !info->loss || !info->predict ||
        !info->params || !info->save || !info->load || !info->input_size || !info->output_size) {
        fprintf(stderr, "nnc: error: '%s' has an incomplete model entry\n", path);
        return false;
    }
    r->info = info;
    return true;
}

// The text of a status code: the model's own <name>_strerror when it exports one.
static const char *status_text(const nnc_model_info *info, int rc) {
    if (g_handle && info && info->name) {
        char sym[256];
        snprintf(sym, sizeof sym, "%s_strerror", info->name);
        const char *(*fn)(int) = (const char *(*)(int))dlsym(g_handle, sym);
        if (fn && fn(rc)) return fn(rc);
    }
    switch (rc) {
    case NNC_OK: return "success";
    case NNC_EIO: return "cannot open, read or write the file";
    case NNC_EFORMAT: return "not a valid checkpoint (bad header, truncated or wrong dtype)";
    case NNC_EMISMATCH: return "a checkpoint of another model (names, shapes or signature differ)";
    case NNC_ENOMEM: return "out of memory";
    case NNC_EINVAL: return "invalid argument";
    default: return "unknown error";
    }
}

// ---- data

static bool load_data(TrainRun *r, const char *spec, bool is_test, TrainData *out) {
    const nnc_model_info *info = r->info;
    const char *what = is_test ? "test" : "training";
    nnrt_dataset *ds = nn_alloc(&r->arena, sizeof *ds);
    char err[512] = "";
    int rc = nnrt_dataset_load(spec, info->input_size, info->target_size,
                               is_test ? NNRT_SPLIT_TEST : NNRT_SPLIT_TRAIN, ds, err, sizeof err);
    if (rc != NNC_OK) {
        // the loaders' messages start with the file's name
        if (err[0]) fprintf(stderr, "nnc: error: %s\n", err);
        else fprintf(stderr, "nnc: error: cannot load the %s data '%s': %s\n", what, spec, status_text(NULL, rc));
        return false;
    }
    *out = (TrainData){ spec, ds->n, ds->input_size, ds->target_size, ds->x, ds->y, ds };
    if (out->x_size != info->input_size || out->y_size != info->target_size) {
        fprintf(stderr, "nnc: error: %s data '%s' has %zu input and %zu target values per sample; "
                "the model takes %zu and %zu\n", what, spec, out->x_size, out->y_size,
                info->input_size, info->target_size);
        return false;
    }
    if (out->n == 0) {
        fprintf(stderr, "nnc: error: %s data '%s' holds no samples\n", what, spec);
        return false;
    }
    if (out->n > UINT32_MAX) {
        fprintf(stderr, "nnc: error: %s data '%s' has %zu samples; at most %u are supported\n", what, spec,
                out->n, UINT32_MAX);
        return false;
    }
    return true;
}

static void free_data(TrainData *d) {
    if (d->owner) nnrt_dataset_free(d->owner);   // the struct itself is in the arena
    d->owner = NULL;
}

// ---- checkpoints: the model's file plus the "nnc.train" metadata entry

// Skips a JSON string starting at h[i] == '"'; returns the index after it, or n.
static size_t json_skip_string(const char *h, size_t i, size_t n) {
    for (i++; i < n; i++) {
        if (h[i] == '\\') i++;
        else if (h[i] == '"') return i + 1;
    }
    return n;
}

static size_t json_skip_space(const char *h, size_t i, size_t n) {
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) i++;
    return i;
}

// Skips any JSON value at h[i] (a loop with a depth count, no recursion).
static size_t json_skip_value(const char *h, size_t i, size_t n) {
    int depth = 0;
    while (i < n) {
        char c = h[i];
        if (c == '"') i = json_skip_string(h, i, n);
        else if (c == '{' || c == '[') { depth++; i++; }
        else if (c == '}' || c == ']') {
            if (depth == 0) return i;
            depth--;
            i++;
        } else if ((c == ',' || c == ':') && depth == 0) return i;
        else i++;
        if (depth == 0 && (c == '"' || c == '}' || c == ']')) return i;
    }
    return n;
}

// Finds the value of `key` in the object whose '{' is at h[obj]; returns its index or 0
// (and the index of the pair's key in *pair, the index after the value in *end).
static size_t json_find(const char *h, size_t obj, size_t n, const char *key, size_t *pair, size_t *end) {
    size_t klen = strlen(key), i = json_skip_space(h, obj + 1, n);
    while (i < n && h[i] == '"') {
        size_t key_at = i, after = json_skip_string(h, i, n);
        i = json_skip_space(h, after, n);
        if (i >= n || h[i] != ':') return 0;
        i = json_skip_space(h, i + 1, n);
        size_t value = i;
        i = json_skip_value(h, i, n);
        if (after - key_at - 2 == klen && !memcmp(h + key_at + 1, key, klen)) {
            if (pair) *pair = key_at;
            if (end) *end = i;
            return value;
        }
        i = json_skip_space(h, i, n);
        if (i < n && h[i] == ',') i = json_skip_space(h, i + 1, n);
    }
    return 0;
}

typedef struct StFile {
    uint64_t header_len;
    char    *header;       // header_len bytes + NUL
    FILE    *f;            // positioned at the data
} StFile;

static bool st_open(Arena *a, const char *path, StFile *st) {
    unsigned char len8[8];
    st->f = fopen(path, "rb");
    if (!st->f) return false;
    if (fread(len8, 1, 8, st->f) != 8) goto bad;
    st->header_len = 0;
    for (int i = 7; i >= 0; i--) st->header_len = st->header_len << 8 | len8[i];
    if (st->header_len < 2 || st->header_len > (100u << 20)) goto bad;
    st->header = nn_alloc(a, st->header_len + 1);
    if (fread(st->header, 1, st->header_len, st->f) != st->header_len || st->header[0] != '{') goto bad;
    return true;
bad:
    fclose(st->f);
    st->f = NULL;
    return false;
}

char *train_meta_read(Arena *a, const char *path, const char *key) {
    StFile st;
    if (!st_open(a, path, &st)) return NULL;
    fclose(st.f);
    size_t n = st.header_len, meta = json_find(st.header, 0, n, "__metadata__", NULL, NULL);
    if (!meta || st.header[meta] != '{') return NULL;
    size_t v = json_find(st.header, meta, n, key, NULL, NULL);
    if (!v || st.header[v] != '"') return NULL;
    size_t end = json_skip_string(st.header, v, n);
    if (end < v + 2 || st.header[end - 1] != '"') return NULL;   // unterminated
    return nn_strndup(a, st.header + v + 1, end - v - 2);   // our values need no unescaping
}

bool train_meta_write(const char *path, const char *key, const char *value, char *err, size_t err_len) {
    Arena a = { 0 };
    StFile st;
    bool ok = false;
    FILE *out = NULL;
    char *tmp = nn_format(&a, "%s.tmp%ld", path, (long)getpid());
    if (!st_open(&a, path, &st)) {
        snprintf(err, err_len, "'%s' is not a safetensors file", path);
        goto done;
    }
    // The new header: the old one without any `key` entry in __metadata__, then with
    // `"key":"value"` first in it, padded with spaces to a multiple of 8 bytes.
    const char *h = st.header;
    size_t n = st.header_len, pair, pair_end;
    size_t meta = json_find(h, 0, n, "__metadata__", NULL, NULL);
    if (meta && h[meta] == '{' && json_find(h, meta, n, key, &pair, &pair_end)) {
        size_t cut_begin = pair, cut_end = json_skip_space(h, pair_end, n);
        if (cut_end < n && h[cut_end] == ',') cut_end++;              // "k":"v", ...
        else {                                                         // ..., "k":"v" }
            size_t b = pair;
            while (b > meta + 1 && strchr(" \t\r\n", h[b - 1])) b--;
            if (h[b - 1] == ',') cut_begin = b - 1;
        }
        char *stripped = nn_alloc(&a, n + 1);
        memcpy(stripped, h, cut_begin);
        memcpy(stripped + cut_begin, h + cut_end, n - cut_end);
        n -= cut_end - cut_begin;
        stripped[n] = 0;
        h = stripped;
        meta = json_find(h, 0, n, "__metadata__", NULL, NULL);
    }
    char *pad = nn_alloc(&a, n + strlen(key) + strlen(value) + 64);
    size_t len = 0;
    if (meta && h[meta] == '{') {
        bool empty = h[json_skip_space(h, meta + 1, n)] == '}';
        memcpy(pad, h, meta + 1);
        len = meta + 1;
        len += (size_t)sprintf(pad + len, "\"%s\":\"%s\"%s", key, value, empty ? "" : ",");
        memcpy(pad + len, h + meta + 1, n - meta - 1);
        len += n - meta - 1;
    } else {
        bool empty = h[json_skip_space(h, 1, n)] == '}';
        len = (size_t)sprintf(pad, "{\"__metadata__\":{\"%s\":\"%s\"}%s", key, value, empty ? "" : ",");
        memcpy(pad + len, h + 1, n - 1);
        len += n - 1;
    }
    while (len > 0 && pad[len - 1] == ' ') len--;   // the old padding
    while (len % 8) pad[len++] = ' ';
    char *buf = pad;
    size_t buf_len = len;

    out = fopen(tmp, "wb");
    if (!out) {
        snprintf(err, err_len, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)buf_len >> (8 * i));
    bool wrote = fwrite(len8, 1, 8, out) == 8 && fwrite(buf, 1, buf_len, out) == buf_len;
    char chunk[1 << 16];
    size_t got;
    while (wrote && (got = fread(chunk, 1, sizeof chunk, st.f)) > 0)
        wrote = fwrite(chunk, 1, got, out) == got;
    wrote = wrote && !ferror(st.f);
    if (fclose(out)) wrote = false;
    out = NULL;
    if (!wrote || rename(tmp, path)) {
        snprintf(err, err_len, "cannot write '%s': %s", path, strerror(errno ? errno : EIO));
        unlink(tmp);
        goto done;
    }
    ok = true;
done:
    if (st.f) fclose(st.f);
    nn_arena_free(&a);
    return ok;
}

// The state as text: "v1 epoch=E batch_index=K seed=S batch=B n=N lr=X epoch_loss=L
// epoch_samples=C history=E:loss:acc:test_loss:test_acc:sec;..." (only [0-9a-z.:;=+-]).
char *train_state_encode(TrainRun *r) {
    char *buf = NULL;
    size_t len = 0;
    FILE *ms = open_memstream(&buf, &len);
    const TrainState *s = &r->state;
    fprintf(ms, "v1 epoch=%lld batch_index=%lld seed=%llu batch=%zu n=%zu", (long long)s->epoch,
            (long long)s->batch_index, (unsigned long long)s->seed, s->batch, s->n_train);
    if (s->has_lr) fprintf(ms, " lr=%.9g", s->lr);
    fprintf(ms, " epoch_loss=%.17g epoch_samples=%lld", s->epoch_loss, (long long)s->epoch_samples);
    fputs(" history=", ms);
    size_t first = r->n_history > MAX_SAVED_EPOCHS ? r->n_history - MAX_SAVED_EPOCHS : 0;
    for (size_t i = first; i < r->n_history; i++) {
        const EpochStats *e = &r->history[i];
        fprintf(ms, "%s%lld:%.6g:%.6g:%.6g:%.6g:%.3f", i > first ? ";" : "", (long long)e->epoch, e->train_loss,
                e->train_acc, e->test_loss, e->test_acc, e->seconds);
    }
    fclose(ms);
    char *text = nn_strdup(&r->arena, buf);
    free(buf);
    return text;
}

bool train_state_decode(TrainRun *r, const char *text) {
    TrainState s = { 0 };
    if (strncmp(text, "v1 ", 3)) return false;
    const char *p = text + 3;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq) return false;
        size_t klen = (size_t)(eq - p);
        const char *v = eq + 1;
        char *end;
#define KEY(k) (klen == strlen(k) && !strncmp(p, k, klen))
        if (KEY("history")) {
            end = (char *)v;
            while (*end && *end != ' ') {
                EpochStats e;
                e.epoch = strtoll(end, &end, 10);
                double *f[5] = { &e.train_loss, &e.train_acc, &e.test_loss, &e.test_acc, &e.seconds };
                for (int k = 0; k < 5; k++) {
                    if (*end != ':') return false;
                    *f[k] = strtod(end + 1, &end);
                }
                train_add_epoch(r, &e);
                if (*end == ';') end++;
            }
        } else if (KEY("epoch")) s.epoch = strtoll(v, &end, 10);
        else if (KEY("batch_index")) s.batch_index = strtoll(v, &end, 10);
        else if (KEY("seed")) s.seed = strtoull(v, &end, 10);
        else if (KEY("batch")) s.batch = strtoull(v, &end, 10);
        else if (KEY("n")) s.n_train = strtoull(v, &end, 10);
        else if (KEY("lr")) { s.lr = strtof(v, &end); s.has_lr = true; }
        else if (KEY("epoch_loss")) s.epoch_loss = strtod(v, &end);
        else if (KEY("epoch_samples")) s.epoch_samples = strtoll(v, &end, 10);
        else end = strchr(v, ' ') ? strchr(v, ' ') : (char *)v + strlen(v);   // a later version's key
#undef KEY
        if (*end && *end != ' ') return false;
        p = *end ? end + 1 : end;
    }
    if (s.epoch < 0 || s.batch_index < 0 || s.batch == 0) return false;
    r->state = s;
    return true;
}

void train_add_epoch(TrainRun *r, const EpochStats *s) {
    if (r->n_history == r->history_cap) {
        size_t cap = r->history_cap ? 2 * r->history_cap : 16;
        r->history = nn_grow_array(&r->arena, r->history, r->n_history, cap, sizeof *r->history);
        r->history_cap = cap;
    }
    r->history[r->n_history++] = *s;
}

bool train_save(TrainRun *r, const char *path) {
    if (!r->info->save) {
        fprintf(stderr, "nnc: error: the model cannot save checkpoints\n");
        return false;
    }
    int rc = r->info->save(r->model, path);
    if (rc != NNC_OK) {
        const char *why = rc == NNC_EIO ? strerror(errno ? errno : EIO) : status_text(r->info, rc);
        fprintf(stderr, "nnc: error: cannot save the checkpoint '%s': %s\n", path, why);
        return false;
    }
    char err[512];
    if (!train_meta_write(path, META_KEY, train_state_encode(r), err, sizeof err)) {
        fprintf(stderr, "nnc: error: cannot record the training state in '%s': %s\n", path, err);
        return false;
    }
    return true;
}

const char *train_interrupted_path(TrainRun *r) {
    return nn_format(&r->arena, "%s.interrupted.safetensors", model_stem(&r->arena, r->model_path));
}

// Loads --resume: the model's parameters and optimiser state, then our state.
static bool resume(TrainRun *r, const TrainArgs *a) {
    FILE *probe = fopen(r->resume_path, "rb");   // the usual message for a missing file
    if (!probe) {
        fprintf(stderr, "nnc: error: cannot open '%s': %s\n", r->resume_path, strerror(errno));
        return false;
    }
    fclose(probe);
    int rc = r->info->load(r->model, r->resume_path);
    if (rc != NNC_OK) {
        fprintf(stderr, "nnc: error: cannot resume from '%s': %s\n", r->resume_path, status_text(r->info, rc));
        return false;
    }
    char *text = train_meta_read(&r->arena, r->resume_path, META_KEY);
    if (!text) {
        fprintf(stderr, "nnc: warning: '%s' holds no training state; starting at epoch 1 with its parameters\n",
                r->resume_path);
        return true;
    }
    TrainState given = r->state;
    if (!train_state_decode(r, text)) {
        fprintf(stderr, "nnc: error: '%s' has a malformed training state (metadata '%s')\n", r->resume_path,
                META_KEY);
        return false;
    }
    // The saved run's settings win unless given again; a difference breaks exactness.
    TrainState *s = &r->state;
    if (a->has_seed && given.seed != s->seed)
        fprintf(stderr, "nnc: warning: --seed %llu differs from the checkpoint's %llu; the shuffles will differ\n",
                (unsigned long long)given.seed, (unsigned long long)s->seed);
    if (a->has_batch && given.batch != s->batch) {
        fprintf(stderr, "nnc: warning: --batch %zu differs from the checkpoint's %zu; the current epoch restarts\n",
                given.batch, s->batch);
        s->batch_index = 0;
        s->epoch_loss = 0;
        s->epoch_samples = 0;
    }
    if (a->has_seed) s->seed = given.seed;
    if (a->has_batch) s->batch = given.batch;
    if (r->has_lr) {
        s->lr = r->lr;
        s->has_lr = true;
    } else if (s->has_lr) {
        r->lr = s->lr;
        r->has_lr = true;
    }
    if (s->n_train != r->train.n) {
        fprintf(stderr, "nnc: warning: the checkpoint was trained on %zu samples, this data has %zu\n",
                s->n_train, r->train.n);
        s->batch_index = 0;
        s->epoch_loss = 0;
        s->epoch_samples = 0;
    }
    s->n_train = r->train.n;
    r->seed = s->seed;
    r->batch = s->batch;
    size_t steps = (r->train.n + r->batch - 1) / r->batch;
    if ((size_t)s->batch_index >= steps) {   // stopped after an epoch's last step
        s->epoch++;
        s->batch_index = 0;
        s->epoch_loss = 0;
        s->epoch_samples = 0;
    }
    return true;
}

// ---- the subcommand

int nn_train_main(int argc, char **argv) {
    TrainRun *r = calloc(1, sizeof *r);
    if (!r) {
        fputs("nnc: error: out of memory\n", stderr);
        return NN_EXIT_INPUT;
    }
    r->epochs = 1;
    r->batch = 32;
    r->seed = 1;
    TrainArgs a = { 0 };
    int status = parse_args(r, &a, argc, argv);
    if (status >= 0) goto done;
    status = NN_EXIT_INPUT;
    r->model_path = a.model;
    if (!load_model(r, a.model)) goto done;
    const nnc_model_info *info = r->info;
    if (!load_data(r, a.data, false, &r->train)) goto done;
    // Accuracy: argmax of the output against argmax of the target for class vectors; a
    // threshold at 0.5 for one output when every target is 0 or 1 (docs/training.md).
    r->classify = info->target_size > 1 && info->output_size == info->target_size;
    if (info->target_size == 1 && info->output_size == 1) {
        r->binary = true;
        for (size_t i = 0; i < r->train.n && r->binary; i++)
            r->binary = r->train.y[i] == 0 || r->train.y[i] == 1;
        r->classify = r->binary;
    }
    if (a.test) {
        if (!load_data(r, a.test, true, &r->test)) goto done;
        r->has_test = true;
    } else if (!strcmp(a.data, "fashion-mnist") || !strcmp(a.data, "fashion-mnist:train")) {
        if (!load_data(r, "fashion-mnist:test", true, &r->test)) goto done;   // its test part comes with it
        r->has_test = true;
    }

    r->model = info->create(r->seed);
    if (!r->model) {
        fputs("nnc: error: out of memory creating the model\n", stderr);
        goto done;
    }
    r->state = (TrainState){ .seed = r->seed, .batch = r->batch, .n_train = r->train.n,
                             .lr = r->lr, .has_lr = r->has_lr };
    if (r->resume_path && !resume(r, &a)) goto done;
    if (r->has_lr && info->set_lr) info->set_lr(r->model, r->lr);
    if (r->threads && info->set_threads) info->set_threads(r->model, r->threads);

    status = train_loop(r);
    if (status == NN_EXIT_OK && r->save_path) {
        if (!train_save(r, r->save_path)) status = NN_EXIT_INPUT;
        else if (!r->quiet) printf("saved %s\n", r->save_path);
    }
    if (r->plot_path && (status == NN_EXIT_OK || status == 130)) {
        if (!train_plot(r, r->plot_path)) {
            if (status == NN_EXIT_OK) status = NN_EXIT_INPUT;
        } else if (!r->quiet) printf("plot written to %s\n", r->plot_path);
    }
done:
    fflush(stdout);
    if (r->model) r->info->destroy(r->model);
    free_data(&r->train);
    free_data(&r->test);
    if (g_handle) dlclose(g_handle);
    g_handle = NULL;
    nn_arena_free(&r->arena);
    free(r);
    return status;
}
