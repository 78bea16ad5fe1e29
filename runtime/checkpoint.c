// checkpoint.c: save and load a model in the safetensors format (ABI.md §3).
//
// File: an 8-byte little-endian header length N, N bytes of JSON (padded with spaces so the
// data starts 8-aligned), then the raw little-endian float32 data of every tensor. The header
// holds one entry per parameter tensor (desc->info.tensors, e.g. "h1.W") and per optimiser
// state tensor (desc->states, e.g. "h1.W.m"), each {"dtype":"F32","shape":[...],
// "data_offsets":[begin,end]} in bytes from the start of the data, tensors back to back in
// that order; and "__metadata__" with string values: "model" (the model's name),
// "signature" (desc->signature), "step" (optimiser updates taken) and "lr".
//
// Save writes a temporary file in the same directory, fsyncs it and renames it over the
// target, so a crash never leaves a truncated checkpoint. Load reads the whole file, checks
// every length, name, dtype, shape and offset and the signature into locals, and only then
// copies the data into the model in one step: a refused file leaves the model unchanged.
// nnrt_last_error() says what was wrong.
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "nnrt.h"

#define MAX_HEADER (100u << 20)   // bytes, the limit of the reference safetensors reader
#define MAX_DIMS 8                // dims kept for messages; more are compared through numel

static _Thread_local char last_error[512];

const char *nnrt_last_error(void) { return last_error; }

__attribute__((format(printf, 2, 3)))
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

static int64_t numel_of(const nnc_tensor_info *t) {
    int64_t n = 1;
    for (int k = 0; k < t->rank && k < 4; k++) n *= t->shape[k];
    return n;
}

// ---- little-endian float data

static bool host_is_le(void) { return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__; }

static uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }

// Copies n floats from little-endian bytes (any alignment) to dst.
static void floats_from_le(float *dst, const unsigned char *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
    if (!host_is_le()) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &dst[i], 4);
            u = bswap32(u);
            memcpy(&dst[i], &u, 4);
        }
    }
}

// ---- save

typedef struct Buf {          // a growing byte string for the header
    char  *data;
    size_t len, cap;
    bool   is_oom;            // sticky: an append failed
} Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
    if (b->is_oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = nnrt_realloc(b->data, cap);
        if (!p) {
            b->is_oom = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

// A JSON string literal.
static void buf_json_string(Buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = { '\\', (char)*p };
            buf_add(b, esc, 2);
        } else if (*p < 0x20) {
            buf_printf(b, "\\u%04x", *p);
        } else {
            buf_add(b, (const char *)p, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static void buf_tensor(Buf *b, const nnc_tensor_info *t, uint64_t *offset) {
    uint64_t bytes = (uint64_t)numel_of(t) * sizeof(float);
    buf_add(b, ",", 1);
    buf_json_string(b, t->name);
    buf_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int k = 0; k < t->rank && k < 4; k++) buf_printf(b, "%s%" PRId64, k ? "," : "", t->shape[k]);
    buf_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", *offset, *offset + bytes);
    *offset += bytes;
}

// The JSON header, padded with spaces to make 8 + its length a multiple of 8.
static bool build_header(const nnrt_model *m, Buf *b) {
    const nnrt_desc *d = m->desc;
    buf_str(b, "{\"__metadata__\":{\"model\":");
    buf_json_string(b, d->info.name);
    buf_str(b, ",\"signature\":");
    buf_json_string(b, d->signature);
    char lr[32];
    for (int digits = 6; digits <= 9; digits++) {      // the shortest text that reads back as lr
        snprintf(lr, sizeof lr, "%.*g", digits, (double)m->lr);
        if (strtof(lr, NULL) == m->lr) break;
    }
    buf_printf(b, ",\"step\":\"%" PRId64 "\",\"lr\":\"%s\"}", m->step, lr);
    uint64_t offset = 0;
    for (size_t i = 0; i < d->info.n_tensors; i++) buf_tensor(b, &d->info.tensors[i], &offset);
    for (size_t i = 0; i < d->n_states; i++) buf_tensor(b, &d->states[i], &offset);
    buf_add(b, "}", 1);
    while (!b->is_oom && (b->len + 8) % 8 != 0) buf_add(b, " ", 1);
    return !b->is_oom;
}

static bool write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

// Writes n floats as little-endian bytes.
static bool write_floats(int fd, const float *p, size_t n) {
    if (host_is_le()) return write_all(fd, p, n * sizeof(float));
    uint32_t tmp[1024];
    while (n > 0) {
        size_t k = n < 1024 ? n : 1024;
        memcpy(tmp, p, k * 4);
        for (size_t i = 0; i < k; i++) tmp[i] = bswap32(tmp[i]);
        if (!write_all(fd, tmp, k * 4)) return false;
        p += k;
        n -= k;
    }
    return true;
}

static bool write_body(int fd, const nnrt_model *m, const Buf *h) {
    const nnrt_desc *d = m->desc;
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
    if (!write_all(fd, len, 8) || !write_all(fd, h->data, h->len)) return false;
    for (size_t i = 0; i < d->info.n_tensors; i++) {
        const nnc_tensor_info *t = &d->info.tensors[i];
        if (!write_floats(fd, m->params + t->offset, (size_t)numel_of(t))) return false;
    }
    for (size_t i = 0; i < d->n_states; i++) {
        const nnc_tensor_info *t = &d->states[i];
        if (!write_floats(fd, m->state + t->offset, (size_t)numel_of(t))) return false;
    }
    return true;
}

// fsync of the directory holding `path`, so that the rename itself is durable. Best effort.
static void sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1;                       // "/file": the root
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int nnrt_save(const void *mv, const char *path) {
    const nnrt_model *m = mv;
    last_error[0] = 0;
    if (!m || !path || !*path) return fail(NNC_EINVAL, "save: no model or no path");
    Buf h = { 0 };
    if (!build_header(m, &h)) {
        nnrt_free(h.data);
        return fail(NNC_ENOMEM, "out of memory building the checkpoint header");
    }
    size_t n = strlen(path);
    char *tmp = nnrt_malloc(n + 16);
    if (!tmp) {
        nnrt_free(h.data);
        return fail(NNC_ENOMEM, "out of memory");
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp-XXXXXX", 12);
    int rc = NNC_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = fail(NNC_EIO, "cannot create '%s': %s", tmp, strerror(errno));
    } else {
        fchmod(fd, 0644);
        bool ok = write_body(fd, m, &h);
        int err = errno;
        if (ok && fsync(fd) != 0) ok = false, err = errno;
        if (close(fd) != 0 && ok) ok = false, err = errno;
        if (ok && rename(tmp, path) != 0) ok = false, err = errno;
        if (!ok) {
            rc = fail(NNC_EIO, "cannot write '%s': %s", path, strerror(err));
            unlink(tmp);
        } else {
            sync_dir(path);
        }
    }
    nnrt_free(tmp);
    nnrt_free(h.data);
    return rc;
}

// ---- load

typedef struct Entry {        // one tensor of the checkpoint's header
    const char *name;         // inside the cJSON tree
    int         rank;
    int64_t     dims[MAX_DIMS];
    int64_t     numel;
    uint64_t    begin, end;   // bytes from the start of the data
    bool        is_used;      // matched by a model tensor
} Entry;

// A JSON number that is an integer in [0, 2^53].
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

static void format_shape(char *s, size_t size, int rank, const int64_t *dims) {
    size_t n = (size_t)snprintf(s, size, "[");
    for (int k = 0; k < rank && n < size; k++) {
        if (k == MAX_DIMS) {
            n += (size_t)snprintf(s + n, size - n, ",...");
            break;
        }
        n += (size_t)snprintf(s + n, size - n, "%s%" PRId64, k ? "," : "", dims[k]);
    }
    if (n < size) snprintf(s + n, size - n, "]");
}

// Checks one tensor entry of the header into *e.
static int parse_entry(const cJSON *j, Entry *e) {
    e->name = j->string;
    if (!cJSON_IsObject(j)) return fail(NNC_EFORMAT, "tensor '%s' is not a JSON object", e->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dtype)) return fail(NNC_EFORMAT, "tensor '%s' has no dtype", e->name);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return fail(NNC_EFORMAT, "tensor '%s' has dtype %.20s, only F32 is supported", e->name,
                    dtype->valuestring);
    if (!cJSON_IsArray(shape)) return fail(NNC_EFORMAT, "tensor '%s' has no shape", e->name);
    e->rank = 0;
    e->numel = 1;
    for (const cJSON *dim = shape->child; dim; dim = dim->next) {
        uint64_t v;
        if (!json_uint(dim, &v)) return fail(NNC_EFORMAT, "tensor '%s' has a bad shape", e->name);
        if (v != 0 && (uint64_t)e->numel > (uint64_t)INT64_MAX / 4 / v)
            return fail(NNC_EFORMAT, "tensor '%s' has a shape too large", e->name);
        e->numel *= (int64_t)v;
        if (e->rank < MAX_DIMS) e->dims[e->rank] = (int64_t)v;
        if (e->rank < 1000) e->rank++;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &e->begin) ||
        !json_uint(offs->child->next, &e->end) || e->end < e->begin)
        return fail(NNC_EFORMAT, "tensor '%s' has bad data_offsets", e->name);
    if (e->end - e->begin != (uint64_t)e->numel * 4)
        return fail(NNC_EFORMAT, "tensor '%s' has %" PRIu64 " bytes of data, its shape needs %" PRIu64,
                    e->name, e->end - e->begin, (uint64_t)e->numel * 4);
    return NNC_OK;
}

static int compare_begin(const void *a, const void *b) {
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end;
}

// The tensors must tile the data exactly: no gap, no overlap, nothing past the end.
static int check_offsets(Entry *entries, size_t n, uint64_t data_size) {
    Entry **order = nnrt_malloc((n ? n : 1) * sizeof *order);
    if (!order) return fail(NNC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) order[i] = &entries[i];
    qsort(order, n, sizeof *order, compare_begin);
    uint64_t at = 0;
    int rc = NNC_OK;
    for (size_t i = 0; i < n && rc == NNC_OK; i++) {
        if (order[i]->begin != at)
            rc = fail(NNC_EFORMAT, "data of tensor '%s' starts at byte %" PRIu64 ", expected %" PRIu64
                      " (a gap or an overlap)", order[i]->name, order[i]->begin, at);
        at = order[i]->end;
    }
    if (rc == NNC_OK && at != data_size)
        rc = fail(NNC_EFORMAT, "the header describes %" PRIu64 " bytes of tensor data, the file has %" PRIu64
                  " (truncated or trailing bytes)", at, data_size);
    nnrt_free(order);
    return rc;
}

static const char *meta_string(const cJSON *meta, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(meta, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

// The checkpoint's tensor matching the model's tensor t, marked used; else an EMISMATCH.
static int match_tensor(const nnc_tensor_info *t, Entry *entries, size_t n, Entry **out) {
    for (size_t i = 0; i < n; i++) {
        Entry *e = &entries[i];
        if (strcmp(e->name, t->name) != 0) continue;
        bool same = e->rank == t->rank && e->numel == numel_of(t);
        for (int k = 0; same && k < t->rank && k < 4; k++) same = e->dims[k] == t->shape[k];
        if (!same) {
            char a[96], b[96];
            format_shape(a, sizeof a, e->rank, e->dims);
            format_shape(b, sizeof b, t->rank, t->shape);
            return fail(NNC_EMISMATCH, "tensor '%s' has shape %s in the checkpoint, %s in the model",
                        t->name, a, b);
        }
        e->is_used = true;
        *out = e;
        return NNC_OK;
    }
    return fail(NNC_EMISMATCH, "tensor '%s' of the model is missing from the checkpoint", t->name);
}

// Checks the metadata and that names and shapes are the model's; fills match[] (params then
// states) with the entry of each model tensor.
static int check_model(const nnrt_model *m, const cJSON *meta, Entry *entries, size_t n,
                       Entry **match, int64_t *step, float *lr) {
    const nnrt_desc *d = m->desc;
    if (!meta) return fail(NNC_EMISMATCH, "the checkpoint has no __metadata__: not saved by nnc");
    for (const cJSON *j = meta->child; j; j = j->next)
        if (!cJSON_IsString(j)) return fail(NNC_EFORMAT, "__metadata__ value '%s' is not a string", j->string);
    const char *name = meta_string(meta, "model"), *sig = meta_string(meta, "signature");
    const char *s_step = meta_string(meta, "step"), *s_lr = meta_string(meta, "lr");
    if (!name || !sig) return fail(NNC_EMISMATCH, "the checkpoint has no model name or signature: not saved by nnc");
    if (strcmp(name, d->info.name ? d->info.name : "") != 0)
        return fail(NNC_EMISMATCH, "the checkpoint is of model '%.100s', this model is '%.100s'", name, d->info.name);
    if (!s_step || !*s_step || strspn(s_step, "0123456789") != strlen(s_step) || strlen(s_step) > 18)
        return fail(NNC_EFORMAT, "__metadata__ 'step' is missing or not a number");
    *step = strtoll(s_step, NULL, 10);
    if (s_lr) {
        char *end;
        double v = strtod(s_lr, &end);
        if (end == s_lr || *end || !isfinite(v) || !isfinite((float)v))
            return fail(NNC_EFORMAT, "__metadata__ 'lr' is not a finite number");
        *lr = (float)v;
    }
    size_t k = 0;
    for (size_t i = 0; i < d->info.n_tensors; i++, k++) {
        int rc = match_tensor(&d->info.tensors[i], entries, n, &match[k]);
        if (rc) return rc;
    }
    for (size_t i = 0; i < d->n_states; i++, k++) {
        int rc = match_tensor(&d->states[i], entries, n, &match[k]);
        if (rc) return rc;
    }
    for (size_t i = 0; i < n; i++)
        if (!entries[i].is_used)
            return fail(NNC_EMISMATCH, "the checkpoint has a tensor '%s' that the model does not have",
                        entries[i].name);
    if (strcmp(sig, d->signature ? d->signature : "") != 0)
        return fail(NNC_EMISMATCH, "the checkpoint's model signature differs from this model's "
                    "(same tensors, another network or optimiser): '%.150s' vs '%.150s'",
                    sig, d->signature ? d->signature : "");
    return NNC_OK;
}

// Everything is read into locals and checked first; the model is written only at the end.
int nnrt_load_buffer(void *mv, const void *bufv, size_t size) {
    nnrt_model *m = mv;
    const unsigned char *buf = bufv;
    last_error[0] = 0;
    if (!m || (!buf && size)) return fail(NNC_EINVAL, "load: no model or no data");
    if (size < 8) return fail(NNC_EFORMAT, "the file has %zu bytes, fewer than the 8 of the header length", size);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)buf[i] << (8 * i);
    if (hlen < 2 || hlen > MAX_HEADER || hlen > size - 8)
        return fail(NNC_EFORMAT, "bad header length %" PRIu64 " in a file of %zu bytes", hlen, size);
    const char *hdr = (const char *)buf + 8;
    if (memchr(hdr, 0, hlen)) return fail(NNC_EFORMAT, "the header contains a NUL byte");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root) return fail(NNC_EFORMAT, "the header is not valid JSON");
    for (const char *p = end; p && p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return fail(NNC_EFORMAT, "the header has bytes after its JSON object");
        }
    int rc = NNC_OK;
    const cJSON *meta = NULL;
    size_t n = 0, cap = (size_t)cJSON_GetArraySize(root);
    size_t n_model = m->desc->info.n_tensors + m->desc->n_states;
    Entry *entries = nnrt_malloc((cap ? cap : 1) * sizeof *entries);
    Entry **match = nnrt_malloc((n_model ? n_model : 1) * sizeof *match);
    int64_t step = 0;
    float lr = m->lr;
    if (!entries || !match) rc = fail(NNC_ENOMEM, "out of memory");
    else if (!cJSON_IsObject(root)) rc = fail(NNC_EFORMAT, "the header is not a JSON object");
    for (const cJSON *j = rc ? NULL : root->child; j && rc == NNC_OK; j = j->next) {
        if (strcmp(j->string, "__metadata__") == 0) {
            if (meta || !cJSON_IsObject(j)) rc = fail(NNC_EFORMAT, "bad or repeated __metadata__");
            meta = j;
            continue;
        }
        for (size_t i = 0; i < n && rc == NNC_OK; i++)
            if (strcmp(entries[i].name, j->string) == 0)
                rc = fail(NNC_EFORMAT, "tensor '%s' appears twice in the header", j->string);
        if (rc == NNC_OK) {
            memset(&entries[n], 0, sizeof entries[n]);
            rc = parse_entry(j, &entries[n++]);
        }
    }
    if (rc == NNC_OK) rc = check_offsets(entries, n, size - 8 - hlen);
    if (rc == NNC_OK) rc = check_model(m, meta, entries, n, match, &step, &lr);
    if (rc == NNC_OK) {                 // commit: the only step that writes to m
        const unsigned char *data = buf + 8 + hlen;
        const nnrt_desc *d = m->desc;
        size_t k = 0;
        for (size_t i = 0; i < d->info.n_tensors; i++, k++)
            floats_from_le(m->params + d->info.tensors[i].offset, data + match[k]->begin, (size_t)match[k]->numel);
        for (size_t i = 0; i < d->n_states; i++, k++)
            floats_from_le(m->state + d->states[i].offset, data + match[k]->begin, (size_t)match[k]->numel);
        m->step = step;
        m->lr = lr;
    }
    nnrt_free(match);
    nnrt_free(entries);
    cJSON_Delete(root);
    return rc;
}

int nnrt_load(void *mv, const char *path) {
    last_error[0] = 0;
    if (!mv || !path) return fail(NNC_EINVAL, "load: no model or no path");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(NNC_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(NNC_EIO, "cannot read '%s': not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = nnrt_malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return fail(NNC_ENOMEM, "out of memory reading '%s' (%zu bytes)", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    int err = errno;
    close(fd);
    int rc;
    if (got != size) rc = fail(NNC_EIO, "cannot read '%s': %s", path, got < size ? strerror(err) : "file changed");
    else rc = nnrt_load_buffer(mv, buf, size);
    nnrt_free(buf);
    return rc;
}
