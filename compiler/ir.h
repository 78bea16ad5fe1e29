// ir.h: the typed tensor IR. A Graph is a DAG of tensor operations in one array:
// operands always have smaller ids than their users, so nodes[] is already in
// topological order and every pass is a loop over it, never a recursion.
//
// Shapes are per sample: the batch dimension is implicit. A node that depends on
// the input or the target varies with the sample (IR_F_BATCH): at run time it is
// a [batch, shape...] tensor. Other nodes (params, constants, optimiser state)
// are the same for every sample. BATCH_SUM turns a per-sample value into its
// sum over the batch; an invariant value used with a per-sample one is the same
// for every sample (no explicit broadcast over the batch).
//
// Nodes are created only by ir_node(), which hash-conses: structurally equal
// nodes (op, operands, shape, attributes, bits of imm) are one node.
#ifndef NNC_IR_H
#define NNC_IR_H

#include "nnc.h"

typedef enum {
#define IR_OP(name, arity, comm, flops, kind) IR_##name,
#include "ir_ops.def"
#undef IR_OP
    IR_N_OPS
} IrOp;

typedef enum { IR_KIND_LEAF, IR_KIND_UNARY, IR_KIND_BINARY, IR_KIND_OTHER } IrOpKind;

typedef struct IrOpInfo {
    const char *name;     // "matmul"
    uint8_t     arity;
    uint8_t     commutative;
    uint8_t     flops;    // per output element (see docs/autodiff.md for the convention)
    IrOpKind    kind;
} IrOpInfo;
extern const IrOpInfo ir_op_info[IR_N_OPS];

// Run-time scalars (SCALAR_ARG's imm).
typedef enum {
    IR_ARG_LR,         // the learning rate (set_lr)
    IR_ARG_STEP,       // t, the optimiser step being taken, from 1
    IR_ARG_INV_BATCH,  // 1 / batch
} IrScalarArg;

#define IR_MAX_RANK 4
typedef struct Shape {
    uint8_t rank;               // 0: scalar
    int32_t dim[IR_MAX_RANK];   // dim[rank..] are 0
} Shape;

typedef uint32_t NodeId;        // 0 is "no node"

enum {
    IR_F_BATCH = 1 << 0,        // varies with the sample (depends on INPUT or TARGET)
};

typedef struct Node {
    uint16_t op;                // IrOp
    uint8_t  n_args;
    uint8_t  flags;             // IR_F_*; computed by ir_node from the operands
    NodeId   arg[3];            // each < this node's id
    double   imm;               // CONST value, LEAKY_RELU slope, PARAM/STATE/GRAD_IN index, SCALAR_ARG kind
    int32_t  attr[2];           // conv/pool: {stride, padding or size}
    Shape    shape;             // per sample
    SrcRange at;                // where it came from (not part of the hash key)
} Node;

typedef struct Graph {
    Arena    *arena;
    Node     *nodes;            // nodes[0] unused
    uint32_t  n_nodes, nodes_cap;
    uint32_t *slots;            // open-addressing hash table of NodeIds (0 = empty)
    uint32_t  slots_cap;        // a power of two
} Graph;

Graph  *ir_graph_new(Arena *a);
// The only constructor: orders commutative operands, computes flags, and returns
// an existing equal node or appends this one. `proto.shape` must be set by the
// caller (the ir_* helpers below compute it). Operands must already exist.
NodeId  ir_node(Graph *g, Node proto);
static inline const Node *ir_get(const Graph *g, NodeId id) { return &g->nodes[id]; }
// Checks every invariant of docs/ir.md (operand order, arity, flags, shape rules,
// hash-consing table); nn_bug with the offending node otherwise. For debug builds
// and tests, after each pass.
void    ir_verify(const Graph *g);

// ---- Shapes (ir.c)
int64_t ir_numel(Shape s);
bool    ir_shape_eq(Shape a, Shape b);
// NumPy broadcasting of a and b; false if they do not broadcast.
bool    ir_broadcast_shape(Shape a, Shape b, Shape *out);
// "[128,784]", "[]" for a scalar; into buf, returns buf.
char   *ir_shape_str(Shape s, char *buf, size_t size);
static inline Shape ir_scalar_shape(void) { return (Shape){ 0, { 0 } }; }
Shape   ir_shape1(int32_t d0);
Shape   ir_shape2(int32_t d0, int32_t d1);

// ---- Convenience constructors (ir.c). They compute the result shape and assume
// the operands' shapes are valid for the op (sema has checked them; NN_ASSERT otherwise).
NodeId ir_const(Graph *g, double v, Shape s, SrcRange at);
NodeId ir_scalar(Graph *g, double v);                       // CONST of shape []
NodeId ir_leaf(Graph *g, IrOp op, double imm, Shape s, SrcRange at);
NodeId ir_unary(Graph *g, IrOp op, NodeId a, SrcRange at);
NodeId ir_leaky_relu(Graph *g, NodeId a, double alpha, SrcRange at);
NodeId ir_binary(Graph *g, IrOp op, NodeId a, NodeId b, SrcRange at);
NodeId ir_matmul(Graph *g, NodeId a, NodeId b, SrcRange at);
NodeId ir_outer(Graph *g, NodeId a, NodeId b, SrcRange at);
NodeId ir_transpose(Graph *g, NodeId a, SrcRange at);
NodeId ir_reshape(Graph *g, NodeId a, Shape s, SrcRange at);
NodeId ir_broadcast(Graph *g, NodeId a, Shape s, SrcRange at);
NodeId ir_reduce_to(Graph *g, NodeId a, Shape s, SrcRange at);
NodeId ir_reduce(Graph *g, IrOp op, NodeId a, SrcRange at);  // SUM, SUM_LAST, LOGSUMEXP, BATCH_SUM
NodeId ir_softmax(Graph *g, IrOp op, NodeId a, SrcRange at);  // SOFTMAX, LOG_SOFTMAX
NodeId ir_conv2d(Graph *g, NodeId x, NodeId w, int stride, int padding, SrcRange at);
NodeId ir_pool2d(Graph *g, IrOp op, NodeId x, int size, int stride, SrcRange at);
// Gradient helpers of conv/pool: the result shape is given.
NodeId ir_node_shaped(Graph *g, IrOp op, NodeId a, NodeId b, Shape s, int32_t attr0, int32_t attr1, SrcRange at);

// ---- The model: the graph plus what the API needs (sema builds it, autodiff extends it).
typedef enum { INIT_ZEROS, INIT_ONES, INIT_CONSTANT, INIT_UNIFORM, INIT_NORMAL, INIT_XAVIER, INIT_HE } InitKind;
typedef struct IrInit {
    InitKind kind;
    double   a, b;              // constant(a), uniform(a, b), normal(mean a, std b)
} IrInit;

typedef struct IrParam {
    const char *name;           // "h1.W"
    Shape       shape;
    IrInit      init;
    int64_t     fan_in, fan_out;// for xavier/he (dense W [units,in]: in, units; conv: c*k*k, f*k*k)
    NodeId      node;           // its PARAM leaf
    size_t      offset;         // floats, inside params(): order of first appearance, no gaps
    SrcRange    at;
} IrParam;

typedef enum { OPT_SGD, OPT_ADAM } OptKind;
typedef struct IrOptimizer {
    OptKind kind;
    double  lr;
    double  momentum, weight_decay;  // sgd (weight_decay also adam, decoupled)
    bool    nesterov;
    double  beta1, beta2, eps;       // adam
    double  clip;                    // 0: no clipping
    bool    reduce_sum;              // reduce = sum (default mean)
    SrcRange at;
} IrOptimizer;

typedef struct IrState {
    const char *name;           // "h1.W.momentum", "h1.W.m", "h1.W.v"
    Shape       shape;
    uint32_t    param;          // the parameter it belongs to
    size_t      offset;         // floats, inside the state block
} IrState;

typedef struct IrStore {
    bool     to_state;          // false: params[index] <- value; true: states[index] <- value
    uint32_t index;
    NodeId   value;             // invariant, same shape as the destination
} IrStore;

typedef struct Model {
    const char *name;           // the model's name: the C prefix
    SrcRange    name_at;
    Graph      *g;
    NodeId      input;          // INPUT leaf
    NodeId      target;         // TARGET leaf, 0 when the model has none
    NodeId      output;         // what predict returns (per sample)
    NodeId      loss;           // the per-sample loss (scalar, per sample)
    NodeId      objective;      // the batch objective: BATCH_SUM(loss) [* INV_BATCH]
    IrParam    *params;
    uint32_t    n_params;
    size_t      param_count;    // floats
    IrOptimizer opt;
    // Filled by autodiff (grad.c) and the optimiser lowering (optim.c):
    NodeId     *grads;          // n_params: d objective / d param (invariant), 0 before autodiff
    IrState    *states;
    uint32_t    n_states;
    size_t      state_count;    // floats
    IrStore    *stores;         // the update, written in terms of GRAD_IN leaves
    uint32_t    n_stores;
    // Filled by ir_fuse_update (optim_fuse.c) for the backend: per store, its value
    // with every GRAD_IN replaced by the gradient itself. NULL before.
    NodeId     *train_values;
    // Names of the input and target declarations (ir_print), NULL if unknown.
    const char *input_name;     // "x"
    const char *target_name;    // "y"
} Model;

// ---- ir_print.c: one node per line: "%12 = matmul %3, %11 : [128] batch"
void ir_print(const Model *m, FILE *out, bool train_step);

// ---- interp.c: the reference interpreter, in double precision.
// Values for a batch of `batch` samples. x: batch*input_size, y: batch*target_size
// (NULL if no target), params: param_count doubles, state: state_count doubles.
typedef struct InterpArgs {
    size_t        batch;
    const double *x, *y;
    const double *params;
    const double *state;
    const double *grad_in;      // param_count doubles, for GRAD_IN (NULL if unused)
    double        lr, step;
} InterpArgs;
// The scalar semantics of one elementwise op, in double (constant folding uses them too).
double ir_eval_unary(IrOp op, double a, double imm);
double ir_eval_binary(IrOp op, double a, double b);
// Evaluates every node; returns per-node arrays (batch*numel for IR_F_BATCH nodes,
// numel otherwise), allocated in `a`. Never recurses.
double **ir_interp(const Model *m, const InterpArgs *args, Arena *a);

#endif
