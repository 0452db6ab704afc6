"""The atom: `Val`, a scalar that remembers how it was made; `Vec`, a vector that does; and the
ops a GPT is built from, each forward followed by its backward.

Follows the seed's `Val` (data, grad, edges to parents with local derivatives) and micrograd's
engine, re-derived for speed, laid out as llm.c's train_gpt2.c is:

1. Plumbing: node pools, deferred releases, packs of Vals, the backward queue.
2. `Val`, whose elementary ops save their local derivatives; one backward serves them all.
3. Fused Val ops (`vsum`, `dot`, `softmax`, `vrelu`): one node with many parents instead of a
   chain of binary nodes.
4. `ValMatrix`: a layer's weights, adopted into contiguous arrays of data and grad.
5. `Vec` and its ops (`vadd`, `rmsnorm`, `linear`, `attention`, `attention_block`, `mlp_block`,
   `cross_entropy`), one node per op; each op's public function also takes lists of Vals.
6. The backward sweep: newest node first (a node is always made after its parents, so creation
   order is a topological order), each node's backward found by its op.
7. Adam, sampling's draw, and `Decoder`: the forward pass with no graph, for sampling and losses
   nobody differentiates.

Not here: GPTs beyond their ops (model.py), files, randomness, processes; not a tensor library
(a Vec is one vector). The loops over plain arrays are C, in `_kernels.h`: the Vec ops and the
Decoder call the same ones, so every path gives the same numbers to the bit.

Notation: a Vec's values and gradients are d and g (a Val's are pd[0] and pg[0], which point into
a ValMatrix's arrays once it adopts the Val); "the backward of y = f(x)" adds d loss / d x into
x's g given y's g (grads accumulate, never overwritten); E = n_emb, T = positions attended over,
hd = E / heads. Edges live in C (a pooled block per interior node, never Python tuples), visited
marks in the node, and freeing a deep graph never recurses in C.

Compiler directives are set in setup.py, in one place.
"""
from cpython cimport array
from cpython.object cimport Py_SIZE
from cpython.ref cimport PyObject, Py_INCREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_ITEMS, PySequence_Fast_GET_SIZE
from libc.float cimport DBL_MIN
from libc.math cimport INFINITY, log, pow, sqrt
from libc.stdlib cimport calloc, malloc, realloc, free
from libc.string cimport memcpy, memset
cimport cython

cdef extern from "Python.h":
    void _decref "Py_DECREF"(PyObject* o)   # on a raw pointer: no temporary reference
    ctypedef struct PyTypeObject
    PyTypeObject* _type_of "Py_TYPE"(PyObject* o)

# The C kernels: loops over plain arrays, with their comments, in _kernels.h beside this file.
# The graph's Vec ops and the graph-free Decoder call the same ones, so every path gives the same
# numbers to the bit.
cdef extern from "_kernels.h":
    # the allocator of nodes' arrays (per-size free lists: no malloc per node after one step)
    void* mg_mem_get(size_t n) nogil
    void mg_mem_put(void* p) nogil
    # the backward queue's bucket of a key
    int mg_bitlen(unsigned long long x) nogil
    # exp, log and whole powers, the same bits on every CPU
    double mg_exp(double x) nogil
    double mg_log(double x) nogil
    double mg_erfc(double x) nogil
    double mg_powi(double x, long long n) nogil
    # each forward, then its backward
    void mg_linear(const double* w, const double* x, double* y, Py_ssize_t rows, Py_ssize_t cols,
                   double scale, int relu) nogil
    void mg_linear_back(const double* w, double* wg, const double* x, double* xg, const double* gy,
                        const double* y, Py_ssize_t rows, Py_ssize_t cols, double scale,
                        int relu) nogil
    double mg_rmsnorm(const double* x, double* y, Py_ssize_t n, double eps) nogil
    void mg_rmsnorm_back(const double* x, double* xg, const double* yg, Py_ssize_t n,
                         double s) nogil
    double mg_softmax(double* p, Py_ssize_t n) nogil
    void mg_attend(const double* q, const double* const* k, const double* const* v,
                   Py_ssize_t off, Py_ssize_t T, Py_ssize_t hd, double scale, double* a,
                   double* out) nogil
    double mg_attention_block(const double* x, double* y, const double* const* w, double* xn,
                              double* q, double* k, double* v, const double* const* kp,
                              const double* const* vp, Py_ssize_t T, Py_ssize_t E,
                              Py_ssize_t heads, double eps, double* a, double* att,
                              double* o) nogil
    void mg_attention_back(const double* const* kd, double* const* kg, const double* const* vd,
                           double* const* vg, Py_ssize_t T, Py_ssize_t heads, Py_ssize_t hd,
                           double scale, const double* weights, const double* g,
                           const double* q, double* qg, double* ga) nogil
    enum: MG_ATTENTION_INSIDES
    void mg_attention_block_back(const double* x, double* xg, const double* yg,
                                 const double* const* w, double* const* wg, double* inside,
                                 const double* a, double s, const double* const* kd,
                                 double* const* kg, const double* const* vd, double* const* vg,
                                 Py_ssize_t T, Py_ssize_t E, Py_ssize_t heads, double* ga) nogil
    double mg_mlp_block(const double* x, double* y, const double* fc1, const double* fc2,
                        double* xn, double* h, double* o, Py_ssize_t E, Py_ssize_t n_ff,
                        double eps) nogil
    Py_ssize_t MG_MLP_INSIDES(Py_ssize_t E, Py_ssize_t n_ff) nogil
    void mg_mlp_block_back(const double* x, double* xg, const double* yg, const double* fc1,
                           double* fc1g, const double* fc2, double* fc2g, double* inside,
                           double s, Py_ssize_t E, Py_ssize_t n_ff) nogil
    # a name's positions at once (GPT.loss)
    void mg_embed_seq(const double* wte, const double* wpe, const Py_ssize_t* tokens,
                      Py_ssize_t T, Py_ssize_t E, double* x) nogil
    void mg_embed_seq_back(double* wteg, double* wpeg, const Py_ssize_t* tokens, Py_ssize_t T,
                           Py_ssize_t E, const double* xg) nogil
    size_t mg_attention_seq_size(Py_ssize_t T, Py_ssize_t E, Py_ssize_t heads) nogil
    void mg_attention_seq(const double* x, double* y, const double* const* w, Py_ssize_t T,
                          Py_ssize_t E, Py_ssize_t heads, double eps, double* saved) nogil
    void mg_attention_seq_back(const double* x, double* xg, const double* yg,
                               const double* const* w, double* const* wg, Py_ssize_t T,
                               Py_ssize_t E, Py_ssize_t heads, double* saved) nogil
    size_t mg_mlp_seq_size(Py_ssize_t T, Py_ssize_t E, Py_ssize_t n_ff) nogil
    void mg_mlp_seq(const double* x, double* y, const double* fc1, const double* fc2,
                    Py_ssize_t T, Py_ssize_t E, Py_ssize_t n_ff, double eps, double* saved) nogil
    void mg_mlp_seq_back(const double* x, double* xg, const double* yg, const double* fc1,
                         double* fc1g, const double* fc2, double* fc2g, Py_ssize_t T,
                         Py_ssize_t E, Py_ssize_t n_ff, double* saved) nogil
    size_t mg_loss_seq_size(Py_ssize_t T, Py_ssize_t E, Py_ssize_t V) nogil
    double mg_loss_seq(const double* x, const double* lm, const Py_ssize_t* targets,
                       Py_ssize_t T, Py_ssize_t E, Py_ssize_t V, double eps, double* saved) nogil
    void mg_loss_seq_back(const double* x, double* xg, double g, const double* lm, double* lmg,
                          Py_ssize_t T, Py_ssize_t E, Py_ssize_t V, double* saved) nogil
    void mg_adam(double* w, double* g, double* m, double* v, Py_ssize_t n, double lr, double b1,
                 double b2, double c1, double c2, double eps) nogil
    # the GPT's forward pass without a graph (the Decoder's); a layer's matrices, in order: wq,
    # wk, wv, wo, fc1, fc2
    enum: MG_LAYER_WEIGHTS
    ctypedef struct mg_gpt:
        Py_ssize_t vocab, n_ctx, n_emb, n_head, n_layer, n_ff
        double eps
        const double* wte
        const double* wpe
        const double* lm_head
        const double** layers
        double* keys
        double* values
        const double** kp
        const double** vp
        double* x
        double* xn
        double* q
        double* att
        double* tmp
        double* hidden
        double* a
        double* logits
    void mg_gpt_forward(mg_gpt* m, Py_ssize_t token, Py_ssize_t pos) nogil
    double mg_gpt_nll(const mg_gpt* m, Py_ssize_t target, double* scratch) nogil


# =============================================================================================
# 1. Plumbing: storage, node pools, deferred releases, packs of Vals, the backward queue.
# =============================================================================================

# Storage: Packs (shared arrays of Vals), Storage (a matrix's contiguous doubles), Edges.

# A Pack is a reference-counted C array of Vals, shared by the many nodes of a fused op
# (every output of `linear` points into the same packed input and weight matrix).
cdef struct Pack:
    Py_ssize_t refcnt
    Py_ssize_t n
    bint has_interior       # some item is an interior node (backward must queue it)
    unsigned long long mark # the epoch of the last backward that queued all its items
    Storage* st             # non-NULL: items[k]'s data and grad are st.data[k], st.grad[k]
    PyObject** items


# The contiguous data and grad of a ValMatrix's Vals. Adopted Vals point here.
cdef struct Storage:
    Py_ssize_t refcnt
    double* data
    double* grad


# How an interior node was made. EDGES: one or two parents with their local derivatives, inline.
# WEIGHTED: n parents in a Pack, local derivatives in an owned array. DOT: scale * sum_j a_j b_j
# over pa[oa : oa + n] and pb[0 : n] (pb NULL: scale * sum_j a_j). VEC: a Val made from elements
# off .. off + n - 1 of one Vec, with local derivatives ds (ds NULL: 1, an element's view).
cdef enum:
    EDGES = 1
    WEIGHTED = 2
    DOT = 3
    VEC = 4


cdef struct TwoEdges:
    PyObject* p0
    PyObject* p1
    double d0
    double d1

cdef struct WeightedEdges:
    Pack* pa
    double* ds

cdef struct DotEdges:
    Pack* pa
    Pack* pb
    Py_ssize_t oa
    double scale

cdef struct VecEdges:
    PyObject* vec
    double* ds
    Py_ssize_t off

cdef union Recipe:
    TwoEdges two
    WeightedEdges w
    DotEdges dot
    VecEdges vec
    void* next_free         # while the block sits in the pool

cdef struct Edges:          # 64 bytes: one cache line
    unsigned long long seq  # creation order
    unsigned long long mark # the epoch of the last backward that reached this node
    int kind
    Py_ssize_t n            # parents (EDGES, WEIGHTED) or terms (DOT)
    Recipe r


cdef unsigned long long _next_seq = 1
cdef unsigned long long _epoch = 0      # one per backward or graph walk: marks need no reset


# Edges come from a pool of fixed-size blocks: an interior node costs no malloc. Blocks are
# handed out in address order from the chunks (a freed block is reused first); when every block
# is free again, as after each training step, the pool rewinds to the first chunk, so the next
# graph is laid out in order and the hardware prefetcher can follow it.
cdef enum:
    EDGES_PER_CHUNK = 4096
    CHUNKS_KEPT = 64            # 16 MiB stays with the pool after a rewind; more goes back
cdef void* _free_edges = NULL           # blocks freed since the last rewind
cdef Edges** _chunks = NULL             # every chunk the pool holds
cdef Py_ssize_t _n_chunks = 0
cdef Py_ssize_t _cap_chunks = 0
cdef Py_ssize_t _bump_chunk = 0         # the next never-used block: _chunks[_bump_chunk][_bump_i]
cdef Py_ssize_t _bump_i = 0
cdef Py_ssize_t _live_edges = 0         # blocks in use


cdef Edges* _edges_new(int kind) except NULL:
    global _free_edges, _next_seq, _chunks, _n_chunks, _cap_chunks, _bump_chunk, _bump_i
    global _live_edges
    cdef Edges* e
    cdef Edges** grown
    if _free_edges != NULL:
        e = <Edges*>_free_edges
        _free_edges = e.r.next_free
    else:
        if _bump_i == EDGES_PER_CHUNK:
            _bump_chunk += 1
            _bump_i = 0
        if _bump_chunk == _n_chunks:
            if _n_chunks == _cap_chunks:
                grown = <Edges**>realloc(_chunks, (2 * _cap_chunks + 16) * sizeof(Edges*))
                if grown == NULL:
                    raise MemoryError()
                _chunks = grown
                _cap_chunks = 2 * _cap_chunks + 16
            e = <Edges*>malloc(EDGES_PER_CHUNK * sizeof(Edges))
            if e == NULL:
                raise MemoryError()
            _chunks[_n_chunks] = e
            _n_chunks += 1
        e = &_chunks[_bump_chunk][_bump_i]
        _bump_i += 1
    _live_edges += 1
    memset(e, 0, sizeof(Edges))
    e.seq = _next_seq
    _next_seq += 1
    e.kind = kind
    return e


cdef inline void _edges_free(Edges* e) noexcept:
    global _free_edges, _live_edges, _bump_chunk, _bump_i, _n_chunks
    cdef Py_ssize_t i
    e.r.next_free = _free_edges
    _free_edges = e
    _live_edges -= 1
    if _live_edges == 0:                # every block is free: rewind
        _free_edges = NULL
        _bump_chunk = 0
        _bump_i = 0
        for i in range(CHUNKS_KEPT, _n_chunks):
            free(_chunks[i])
        if _n_chunks > CHUNKS_KEPT:
            _n_chunks = CHUNKS_KEPT


# An array reused from one graph to the next (the release stack below, the backward queue's
# buckets) that grew past this many entries, for a huge graph, goes back to malloc once empty.
cdef enum:
    KEPT_ENTRIES_MAX = 65536


# Deferred releases: freeing node N releases N's parents through this stack, not recursively.
cdef PyObject** _pending = NULL
cdef Py_ssize_t _n_pending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False


cdef void _release(PyObject* o) noexcept:
    """Drop one reference to o without ever nesting deallocations on the C stack."""
    global _pending, _n_pending, _cap_pending, _draining
    cdef PyObject** grown
    if o.ob_refcnt > 1:                  # not the last reference: nothing can cascade
        _decref(o)
        return
    if _n_pending == _cap_pending:
        grown = <PyObject**>realloc(_pending, (2 * _cap_pending + 1024) * sizeof(PyObject*))
        if grown == NULL:               # out of memory: fall back to a plain release
            _decref(o)
            return
        _pending = grown
        _cap_pending = 2 * _cap_pending + 1024
    _pending[_n_pending] = o
    _n_pending += 1
    if _draining:                       # an outer frame is already emptying the stack
        return
    _draining = True
    while _n_pending > 0:
        _n_pending -= 1
        _decref(_pending[_n_pending])
    _draining = False
    if _cap_pending > KEPT_ENTRIES_MAX:     # a huge graph was freed: give the stack back
        free(_pending)
        _pending = NULL
        _cap_pending = 0


cdef void _storage_release(Storage* st) noexcept:
    st.refcnt -= 1
    if st.refcnt == 0:
        free(st.data)
        free(st.grad)
        free(st)


cdef Pack* _pack_new(Py_ssize_t n) except NULL:
    cdef Pack* pk = <Pack*>malloc(sizeof(Pack) + n * sizeof(PyObject*))
    if pk == NULL:
        raise MemoryError()
    pk.refcnt = 1
    pk.n = 0                            # counts the items stored so far
    pk.has_interior = False
    pk.mark = 0
    pk.st = NULL
    pk.items = <PyObject**>(pk + 1)
    return pk


cdef inline void _pack_put(Pack* pk, Val v) noexcept:
    Py_INCREF(v)
    pk.items[pk.n] = <PyObject*>v
    pk.n += 1
    if v.e != NULL:
        pk.has_interior = True


cdef void _pack_release(Pack* pk) noexcept:
    cdef Py_ssize_t i
    pk.refcnt -= 1
    if pk.refcnt == 0:
        for i in range(pk.n):
            _release(pk.items[i])
        if pk.st != NULL:
            _storage_release(pk.st)
        free(pk)


cdef inline Val _as_val(object o):
    """o as a Val: itself, or a constant leaf for a plain number."""
    if type(o) is Val:
        return <Val>o
    if isinstance(o, (float, int)):
        return _leaf(<double>o)
    raise TypeError(f"expected a Val or a number, got {type(o).__name__}")


cdef Pack* _pack_seq(object seq, Py_ssize_t expected) except NULL:
    """Pack a sequence of Vals (numbers become constants); expected < 0 means any length."""
    cdef object fast = PySequence_Fast(seq, "expected a sequence of Vals")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), i
    cdef PyObject** items = PySequence_Fast_ITEMS(fast)
    cdef Pack* pk
    if expected >= 0 and n != expected:
        raise ValueError(f"expected {expected} Vals, got {n}")
    pk = _pack_new(n)
    try:
        for i in range(n):
            _pack_put(pk, _as_val(<object>items[i]))
    except BaseException:
        _pack_release(pk)
        raise
    return pk


cdef Pack* _pack_rows(object rows, Py_ssize_t n_cols, Py_ssize_t* n_rows) except NULL:
    """Pack a sequence of equal-length rows of Vals, row-major."""
    cdef object fast = PySequence_Fast(rows, "expected a sequence of rows")
    cdef Py_ssize_t m = PySequence_Fast_GET_SIZE(fast), i, j
    cdef PyObject** row_items = PySequence_Fast_ITEMS(fast)
    cdef object row
    cdef PyObject** items
    cdef Pack* pk
    n_rows[0] = m
    pk = _pack_new(m * n_cols)
    try:
        for i in range(m):
            row = PySequence_Fast(<object>row_items[i], "expected each row to be a sequence")
            if PySequence_Fast_GET_SIZE(row) != n_cols:
                raise ValueError(f"row {i} has {PySequence_Fast_GET_SIZE(row)} Vals, expected {n_cols}")
            items = PySequence_Fast_ITEMS(row)
            for j in range(n_cols):
                _pack_put(pk, _as_val(<object>items[j]))
    except BaseException:
        _pack_release(pk)
        raise
    return pk


cdef double* _doubles(Py_ssize_t n) except NULL:
    cdef double* d = <double*>malloc((n if n > 0 else 1) * sizeof(double))
    if d == NULL:
        raise MemoryError()
    return d


cdef inline bint _overlap(const double* a, Py_ssize_t na, const double* b, Py_ssize_t nb) noexcept:
    """Whether a[0:na] and b[0:nb] share memory."""
    return a < b + nb and b < a + na


# A Val's value, and an add into its grad, through a raw pointer.
cdef inline double D(PyObject* o) noexcept:
    return (<Val>o).pd[0]


cdef inline void add_grad(PyObject* o, double x) noexcept:
    (<Val>o).pg[0] = (<Val>o).pg[0] + x


# The backward queue: the nodes waiting for their gradient, newest (largest seq) first; a
# node's key is its seq. It is a radix heap: every key pushed is at most the last key popped (a
# parent is older than its child), so keys can be bucketed by the highest bit where they differ
# from that last key, and a pop is a scan of at most QUEUE_BUCKETS buckets instead of a chain of
# comparisons.
cdef enum:
    QUEUE_BUCKETS = 65      # one per highest differing bit of a 64-bit key, and one for none

cdef struct QueueItem:
    unsigned long long seq
    PyObject* node


cdef struct Bucket:
    QueueItem* items
    Py_ssize_t n
    Py_ssize_t cap


cdef struct Queue:
    unsigned long long last      # the last key popped; every key queued is <= last
    Py_ssize_t size
    Bucket b[QUEUE_BUCKETS]      # b[i]: keys whose highest bit differing from last is bit i-1


# The buckets' arrays outlive a backward pass (the next one reuses them), unless they grew large.
cdef Bucket _buckets[QUEUE_BUCKETS]


cdef inline int _q_append(Bucket* bk, unsigned long long s, PyObject* o) except -1:
    cdef QueueItem* grown
    if bk.n == bk.cap:
        grown = <QueueItem*>realloc(bk.items, (2 * bk.cap + 16) * sizeof(QueueItem))
        if grown == NULL:
            raise MemoryError()
        bk.items = grown
        bk.cap = 2 * bk.cap + 16
    bk.items[bk.n].seq = s
    bk.items[bk.n].node = o
    bk.n += 1
    return 0


cdef inline int _q_push(Queue* q, PyObject* o, unsigned long long s) except -1:
    _q_append(&q.b[mg_bitlen(q.last ^ s)], s, o)
    q.size += 1
    return 0


cdef int _q_pop(Queue* q, PyObject** out) except -1:
    """Take the entry with the largest key."""
    cdef Py_ssize_t i = 0, j
    cdef Bucket* bk
    cdef unsigned long long top
    if q.b[0].n == 0:
        while q.b[i].n == 0:
            i += 1
        bk = &q.b[i]
        top = bk.items[0].seq
        for j in range(1, bk.n):
            if bk.items[j].seq > top:
                top = bk.items[j].seq
        q.last = top                    # every other key in bk moves to a lower bucket
        for j in range(bk.n):
            _q_append(&q.b[mg_bitlen(top ^ bk.items[j].seq)], bk.items[j].seq, bk.items[j].node)
        bk.n = 0
    q.b[0].n -= 1
    q.size -= 1
    out[0] = q.b[0].items[q.b[0].n].node
    return 0


cdef inline int _visit(PyObject* o, Queue* q, unsigned long long epoch) except -1:
    """Queue an interior node the first time this pass reaches it."""
    cdef Edges* e = (<Val>o).e
    if e != NULL and e.mark != epoch:
        e.mark = epoch
        _q_push(q, o, e.seq)
    return 0


cdef inline int _visit_pack(Pack* pk, Py_ssize_t off, Py_ssize_t n, Queue* q,
                            unsigned long long epoch) except -1:
    cdef Py_ssize_t j
    if not pk.has_interior:
        return 0
    if off == 0 and n == pk.n:          # the whole pack (the shared input of a layer): once
        if pk.mark == epoch:
            return 0
        pk.mark = epoch
    for j in range(n):
        _visit(pk.items[off + j], q, epoch)
    return 0


cdef inline int _visit_vec(PyObject* o, Queue* q, unsigned long long epoch) except -1:
    """Queue an interior Vec the first time this pass reaches it."""
    cdef Vec v = <Vec>o
    if v.op != V_LEAF and v.op != V_PART and v.mark != epoch:
        v.mark = epoch
        _q_push(q, o, v.seq)
    return 0


# =============================================================================================
# 2. Val: a scalar and its elementary ops. Each op saves its local derivatives in its node
# (EDGES: one or two parents), so one backward, under the class, serves them all.
# =============================================================================================

cdef inline Val _leaf(double data):
    cdef Val v = Val.__new__(Val)
    v.own_data = data
    return v


cdef inline Val _node(double data, int kind):
    """A fresh interior node; the caller fills in its parents."""
    cdef Val v = Val.__new__(Val)
    v.own_data = data
    v.e = _edges_new(kind)
    return v


cdef inline Val _unary(double data, Val a, double da):
    cdef Val v = _node(data, EDGES)
    v.e.n = 1
    Py_INCREF(a)
    v.e.r.two.p0 = <PyObject*>a
    v.e.r.two.d0 = da
    return v


cdef inline Val _binary(double data, Val a, double da, Val b, double db):
    cdef Val v = _node(data, EDGES)
    v.e.n = 2
    Py_INCREF(a)
    Py_INCREF(b)
    v.e.r.two.p0 = <PyObject*>a
    v.e.r.two.d0 = da
    v.e.r.two.p1 = <PyObject*>b
    v.e.r.two.d1 = db
    return v


cdef inline bint _is_number(object o):
    return isinstance(o, (float, int))


@cython.final
@cython.freelist(4096)                  # freed Vals kept for reuse: a node costs no malloc
cdef class Val:
    """A scalar with a gradient and the edges (parent, d self / d parent) that made it."""
    cdef double* pd                     # -> own_data, or a slot of an adopting ValMatrix
    cdef double* pg                     # -> own_grad, likewise
    cdef Edges* e                       # NULL for a leaf
    cdef Storage* st                    # the adopting matrix's storage, or NULL
    cdef double own_data
    cdef double own_grad

    def __cinit__(self):
        self.pd = &self.own_data
        self.pg = &self.own_grad

    def __init__(self, data):
        self.pd[0] = data

    def __dealloc__(self):
        cdef Edges* e = self.e
        if self.st != NULL:
            _storage_release(self.st)
            self.st = NULL
        if e == NULL:
            return
        self.e = NULL
        if e.kind == EDGES:
            _release(e.r.two.p0)
            if e.n == 2:
                _release(e.r.two.p1)
        elif e.kind == WEIGHTED:
            free(e.r.w.ds)
            _pack_release(e.r.w.pa)
        elif e.kind == VEC:
            mg_mem_put(e.r.vec.ds)
            _release(e.r.vec.vec)
        else:
            _pack_release(e.r.dot.pa)
            if e.r.dot.pb != NULL:
                _pack_release(e.r.dot.pb)
        _edges_free(e)

    @property
    def data(self):
        """The value, a C double."""
        return self.pd[0]

    @data.setter
    def data(self, double x):
        self.pd[0] = x

    @property
    def grad(self):
        """d(root)/d(self) after root.backward(), accumulated across calls; a C double."""
        return self.pg[0]

    @grad.setter
    def grad(self, double x):
        self.pg[0] = x

    def __repr__(self):
        return f"Val(data={self.pd[0]!r}, grad={self.pg[0]!r})"

    def __float__(self):
        return self.pd[0]

    # Elementary ops. Each comment gives the local derivatives d out / d operand.
    # Cython 3 follows Python's binop rules, so reflected operators are written out.

    def __add__(self, other):           # d/da = 1, d/db = 1
        if type(other) is Val:
            return _binary(self.pd[0] + (<Val>other).pd[0], self, 1.0, <Val>other, 1.0)
        if _is_number(other):
            return _unary(self.pd[0] + <double>other, self, 1.0)
        return NotImplemented

    def __radd__(self, other):
        if _is_number(other):
            return _unary(<double>other + self.pd[0], self, 1.0)
        return NotImplemented

    def __sub__(self, other):           # d/da = 1, d/db = -1
        if type(other) is Val:
            return _binary(self.pd[0] - (<Val>other).pd[0], self, 1.0, <Val>other, -1.0)
        if _is_number(other):
            return _unary(self.pd[0] - <double>other, self, 1.0)
        return NotImplemented

    def __rsub__(self, other):          # c - a: d/da = -1
        if _is_number(other):
            return _unary(<double>other - self.pd[0], self, -1.0)
        return NotImplemented

    def __mul__(self, other):           # d/da = b, d/db = a
        cdef double b
        if type(other) is Val:
            b = (<Val>other).pd[0]
            return _binary(self.pd[0] * b, self, b, <Val>other, self.pd[0])
        if _is_number(other):
            return _unary(self.pd[0] * <double>other, self, <double>other)
        return NotImplemented

    def __rmul__(self, other):
        if _is_number(other):
            return _unary(<double>other * self.pd[0], self, <double>other)
        return NotImplemented

    def __truediv__(self, other):       # d/da = 1/b, d/db = -a/b^2
        cdef double b
        if type(other) is Val:
            b = (<Val>other).pd[0]
            return _binary(self.pd[0] / b, self, 1.0 / b, <Val>other, -(self.pd[0] / b) / b)
        if _is_number(other):
            b = <double>other
            return _unary(self.pd[0] / b, self, 1.0 / b)
        return NotImplemented

    def __rtruediv__(self, other):      # c / a: d/da = -c/a^2
        cdef double c
        if _is_number(other):
            c = <double>other
            return _unary(c / self.pd[0], self, -(c / self.pd[0]) / self.pd[0])
        return NotImplemented

    def __neg__(self):                  # d/da = -1
        return _unary(-self.pd[0], self, -1.0)

    def __pos__(self):
        return self

    def __pow__(self, other, modulo):   # a^p: d/da = p a^(p-1); the exponent is a number
        if modulo is not None or not _is_number(other):
            return NotImplemented
        return self.pow(<double>other)

    def __rpow__(self, other, modulo):  # c^a: d/da = c^a ln c
        cdef double c, out
        if modulo is not None or not _is_number(other):
            return NotImplemented
        c = <double>other
        out = pow(c, self.pd[0])
        return _unary(out, self, out * log(c) if out != 0.0 else 0.0)   # 0^a is flat in a

    cpdef Val pow(self, double p):
        """self ** p, for a number p."""
        return _unary(pow(self.pd[0], p), self,
                      p * pow(self.pd[0], p - 1.0) if p != 0.0 else 0.0)  # x^0 is flat

    cpdef Val exp(self):                # d/da = e^a
        cdef double e = mg_exp(self.pd[0])
        return _unary(e, self, e)

    cpdef Val log(self):                # d/da = 1/a
        return _unary(mg_log(self.pd[0]), self, 1.0 / self.pd[0])

    cpdef Val relu(self):               # d/da = 1 if a > 0 else 0
        cdef bint on = self.pd[0] > 0.0
        return _unary(self.pd[0] if on else 0.0, self, 1.0 if on else 0.0)

    def backward(self):
        """Set self.grad to 1 and add d self / d node into the grad of every node below it.

        Gradients accumulate, interior nodes' included (as in the seed): a second backward over
        the same graph adds more than the first did unless the grads are zeroed in between.
        """
        self.pg[0] = 1.0
        _backward(self)


cdef inline int _edges_back(Edges* e, double g, Queue* q, unsigned long long epoch) except -1:
    """The backward of every elementary op (an EDGES node): each parent's grad += g times the
    local derivative its forward saved."""
    add_grad(e.r.two.p0, g * e.r.two.d0)
    _visit(e.r.two.p0, q, epoch)
    if e.n == 2:
        add_grad(e.r.two.p1, g * e.r.two.d1)
        _visit(e.r.two.p1, q, epoch)
    return 0


# =============================================================================================
# 3. Fused Val ops: one node with many parents where the seed builds a chain of binary nodes.
# =============================================================================================

cdef Val _dot_node(Pack* pa, Py_ssize_t oa, Pack* pb, Py_ssize_t n, double scale,
                   bint relu=False):
    """scale * sum_j a_j * b_j over pa[oa:oa+n] and pb[0:n] (pb NULL: scale * sum_j a_j).

    relu: clamp at 0; a clamped node keeps scale 0, its derivative, and backward skips it.
    """
    cdef double s = 0.0
    cdef Py_ssize_t j
    cdef Val v
    if pb == NULL:
        for j in range(n):
            s += D(pa.items[oa + j])
    else:
        for j in range(n):
            s += D(pa.items[oa + j]) * D(pb.items[j])
    s *= scale
    if relu and not s > 0.0:
        s = 0.0
        scale = 0.0
    v = _node(s, DOT)
    v.e.n = n
    v.e.r.dot.scale = scale
    v.e.r.dot.pa = pa
    v.e.r.dot.oa = oa
    pa.refcnt += 1
    v.e.r.dot.pb = pb
    if pb != NULL:
        pb.refcnt += 1
    return v


cdef inline int _dot_back(Edges* e, double g, Queue* q, unsigned long long epoch) except -1:
    """The backward of _dot_node: d/da_j = scale b_j, d/db_j = scale a_j (b_j = 1 for a plain
    sum)."""
    cdef Py_ssize_t j, n = e.n
    cdef Pack* pa = e.r.dot.pa
    cdef Pack* pb = e.r.dot.pb
    cdef PyObject* a
    cdef PyObject* b
    cdef double gs, bd
    if e.r.dot.scale == 0.0:            # a clamped relu (or a zero scale) passes nothing
        return 0
    gs = g * e.r.dot.scale
    if pb == NULL:
        for j in range(n):
            add_grad(pa.items[e.r.dot.oa + j], gs)
    else:
        for j in range(n):
            a = pa.items[e.r.dot.oa + j]
            b = pb.items[j]
            bd = D(b)                   # read both before writing: a may be b
            add_grad(b, gs * D(a))
            add_grad(a, gs * bd)
        _visit_pack(pb, 0, n, q, epoch)
    _visit_pack(pa, e.r.dot.oa, n, q, epoch)
    return 0


def vsum(vals, double scale=1.0):
    """scale * sum(vals) as one Val with len(vals) parents (d/dx_j = scale)."""
    cdef Pack* pk = _pack_seq(vals, -1)
    try:
        return _dot_node(pk, 0, NULL, pk.n, scale)
    finally:
        _pack_release(pk)


def dot(a, b, double scale=1.0):
    """scale * sum_j a[j] * b[j] as one Val (d/da_j = scale b_j, d/db_j = scale a_j)."""
    cdef Pack* pa = _pack_seq(a, -1)
    cdef Pack* pb = NULL
    try:
        pb = _pack_seq(b, pa.n)
        return _dot_node(pa, 0, pb, pa.n, scale)
    finally:
        _pack_release(pa)
        if pb != NULL:
            _pack_release(pb)


cdef Val _weighted(double data, Pack* pk, double* ds):
    """A node over all of pk with local derivatives ds (the node takes ownership of ds)."""
    cdef Val v
    try:
        v = _node(data, WEIGHTED)
    except BaseException:
        free(ds)
        raise
    v.e.n = pk.n
    v.e.r.w.pa = pk
    pk.refcnt += 1
    v.e.r.w.ds = ds
    return v


cdef inline int _weighted_back(Edges* e, double g, Queue* q, unsigned long long epoch) except -1:
    """The backward of _weighted: x_j's grad += g ds_j."""
    cdef Py_ssize_t j
    cdef Pack* pa = e.r.w.pa
    for j in range(e.n):
        add_grad(pa.items[j], g * e.r.w.ds[j])
    _visit_pack(pa, 0, e.n, q, epoch)
    return 0


cdef double _log_sum_exp(Pack* pk, double* p):
    """log sum_j exp(x_j) of a pack's values, writing softmax(x)_j into p."""
    cdef Py_ssize_t j
    for j in range(pk.n):
        p[j] = D(pk.items[j])
    return mg_softmax(p, pk.n)


def softmax(logits):
    """softmax(logits) as len(logits) Vals summing to 1.

    Built as y_i = exp(x_i - L) with L = logsumexp(x) one shared node (dL/dx_j = y_j),
    so y_i has two parents (dy_i/dx_i = y_i, dy_i/dL = -y_i): O(n) edges, not n^2.
    """
    cdef Pack* pk = _pack_seq(logits, -1)
    cdef Py_ssize_t n = pk.n, i
    cdef double* p
    cdef Val lse
    cdef list out
    try:
        if n == 0:
            raise ValueError("softmax of an empty list")
        p = _doubles(n)
        lse = _weighted(_log_sum_exp(pk, p), pk, p)
        out = [None] * n
        for i in range(n):
            out[i] = _binary(p[i], <Val>pk.items[i], p[i], lse, -p[i])
        return out
    finally:
        _pack_release(pk)


def vrelu(x):
    """[relu(x_i)] for a list of Vals."""
    return [(<Val>_as_val(v)).relu() for v in x]


# =============================================================================================
# 4. ValMatrix: a layer's weights, adopted into contiguous arrays.
# =============================================================================================

cdef bint _adopt(Pack* pk) except -1:
    """Move the data and grad of pk's Vals into contiguous arrays, if each is a leaf that no
    other matrix holds and none repeats; return whether it did (else nothing changes)."""
    cdef Storage* st
    cdef Val v
    cdef Py_ssize_t k, n = pk.n
    if pk.has_interior or n == 0:
        return False
    for k in range(n):
        if (<Val>pk.items[k]).st != NULL:
            return False
    st = <Storage*>malloc(sizeof(Storage))
    if st == NULL:
        raise MemoryError()
    st.data = <double*>malloc(n * sizeof(double))
    st.grad = <double*>malloc(n * sizeof(double))
    if st.data == NULL or st.grad == NULL:
        free(st.data)
        free(st.grad)
        free(st)
        raise MemoryError()
    st.refcnt = 1                       # the pack's reference
    for k in range(n):
        v = <Val>pk.items[k]
        if v.st == st:                  # the same Val twice: give everything back
            for j in range(k):
                _unadopt(<Val>pk.items[j])
            _storage_release(st)
            return False
        st.data[k] = v.pd[0]
        st.grad[k] = v.pg[0]
        v.pd = st.data + k
        v.pg = st.grad + k
        v.st = st
        st.refcnt += 1
    pk.st = st
    return True


cdef void _unadopt(Val v) noexcept:
    v.own_data = v.pd[0]
    v.own_grad = v.pg[0]
    v.pd = &v.own_data
    v.pg = &v.own_grad
    _storage_release(v.st)
    v.st = NULL


@cython.final
cdef class ValMatrix:
    """A fixed rows x cols grid of Vals packed in C, so `linear` can reuse it without repacking.

    When the Vals are leaves held by no other matrix (a model's weights), the matrix adopts
    them: their data and grad move into two contiguous arrays that `linear`, backward and
    `adam_step` read as plain doubles. The Vals still read and write those same numbers.
    """
    cdef Pack* pk
    cdef readonly Py_ssize_t rows
    cdef readonly Py_ssize_t cols

    def __cinit__(self):
        self.pk = _pack_new(0)          # never NULL, even before __init__

    def __init__(self, rows):
        cdef object fast = PySequence_Fast(rows, "expected a sequence of rows")
        cdef Py_ssize_t m, n = 0
        cdef Pack* pk
        if PySequence_Fast_GET_SIZE(fast) > 0:
            n = len(<object>PySequence_Fast_ITEMS(fast)[0])
        pk = _pack_rows(fast, n, &m)
        try:
            _adopt(pk)
        except BaseException:
            _pack_release(pk)
            raise
        _pack_release(self.pk)
        self.pk = pk
        self.rows = m
        self.cols = n

    def __dealloc__(self):
        if self.pk != NULL:
            _pack_release(self.pk)

    @property
    def shape(self):
        return (self.rows, self.cols)

    @property
    def contiguous(self):
        """Whether the matrix adopted its Vals (their numbers live in its arrays)."""
        return self.pk.st != NULL

    def __len__(self):
        return self.rows

    def __getitem__(self, Py_ssize_t i):
        """Row i as a list of cols Vals."""
        if i < 0:
            i += self.rows
        if not 0 <= i < self.rows:
            raise IndexError("ValMatrix row out of range")
        return [<object>self.pk.items[i * self.cols + j] for j in range(self.cols)]

    def row(self, Py_ssize_t i):
        """Row i as a Vec that views the matrix's arrays (its gradient goes straight to them)."""
        return _row(self, i)

    def tolist(self):
        """The rows as lists of Vals."""
        return [self[i] for i in range(self.rows)]

    def values(self):
        """All rows * cols Vals, row-major."""
        return [<object>self.pk.items[k] for k in range(self.pk.n)]

    def datas(self):
        """All rows * cols values as a list of floats, row-major."""
        return [D(self.pk.items[k]) for k in range(self.pk.n)]

    def grads(self):
        """All rows * cols gradients as a list of floats, row-major."""
        return [(<Val>self.pk.items[k]).pg[0] for k in range(self.pk.n)]

    def set_datas(self, values):
        """Overwrite every value from a sequence of rows * cols floats, row-major."""
        cdef Py_ssize_t k
        vals = [float(x) for x in values]
        if len(vals) != self.pk.n:
            raise ValueError(f"set_datas: expected {self.pk.n} values, got {len(vals)}")
        for k in range(self.pk.n):
            (<Val>self.pk.items[k]).pd[0] = vals[k]

    def zero_grad(self):
        """Set every Val's grad to 0."""
        cdef Py_ssize_t k
        for k in range(self.pk.n):
            (<Val>self.pk.items[k]).pg[0] = 0.0

    def __repr__(self):
        return f"ValMatrix(rows={self.rows}, cols={self.cols})"


# =============================================================================================
# 5. Vec: a whole layer's outputs as one node; its ops, each forward followed by its backward.
#
# A GPT's forward pass is a handful of vector ops per token (add, RMSNorm, a matrix times a
# vector, attention). Made of scalar Vals, each is one Python object per output; a Vec is one
# object holding n doubles and their n gradients, with its op's backward written over plain
# arrays. Vecs sit in the same graph as Vals: `cross_entropy` (and indexing, `v[i]`) makes a Val
# from a Vec, and backward walks both in creation order. A Vec's parents are Vecs, or the
# contiguous weights of a ValMatrix, whose gradients it adds into directly.
# =============================================================================================

# What made a Vec, and so which backward the sweep calls for it.
cdef enum:
    V_LEAF = 0          # a row of a ValMatrix (a view of its arrays), or constants
    V_ADD = 1
    V_RMSNORM = 2
    V_LINEAR = 3
    V_ATTENTION = 4
    V_ATTENTION_BLOCK = 5   # x + wo . attention(wq . rmsnorm(x), keys, values)
    V_MLP_BLOCK = 6         # x + fc2 . relu(fc1 . rmsnorm(x))
    V_PART = 7              # a block's key or value: the block does its backward
    V_EMBED_SEQ = 8         # a name's positions at once (GPT.loss): wte[tokens] + wpe
    V_ATTENTION_SEQ = 9     #   attention_block at every position
    V_MLP_SEQ = 10          #   mlp_block at every position
    V_LOSS_SEQ = 11         #   the mean cross-entropy of the next tokens (one value)


@cython.final
@cython.freelist(256)                   # freed Vecs kept for reuse
cdef class Vec:
    """n doubles with a gradient each, made by one op from its parents: one node for a vector.

    `v.data` and `v.grad` are lists of floats; `v[i]` is a Val that is element i (its gradient
    flows back into this Vec). Made by `ValMatrix.row`, `vadd`, `rmsnorm`, `linear`, `attention`,
    the blocks (`attention_block`, `mlp_block`) and a name's positions at once (`embed_seq`,
    `attention_seq`, `mlp_seq`; `loss_seq` gives element 0 of one).
    """
    cdef double* d
    cdef double* g
    cdef readonly Py_ssize_t n
    cdef int op
    cdef unsigned long long seq
    cdef unsigned long long mark
    cdef bint owns                  # d and g are this node's (else a matrix's arrays)
    cdef object owner               # what keeps d and g alive when not owned
    cdef PyObject** parents         # Vecs, one reference each
    cdef Py_ssize_t n_parents
    cdef ValMatrix W                # linear: the weights
    cdef double scale               # linear, attention: the scale; rmsnorm: the factor s
    cdef bint relu                  # linear: clamped at 0
    cdef Py_ssize_t heads           # attention
    cdef double* saved              # attention: the weights, heads x steps; a block or a name's
                                    # positions at once: its insides
    cdef tuple Ws                   # a block: its weight matrices

    def __init__(self, values):
        """A constant Vec (a leaf) holding values."""
        cdef list vals = [float(x) for x in values]
        cdef Py_ssize_t j
        _vec_alloc(self, len(vals), V_LEAF)
        for j in range(self.n):
            self.d[j] = vals[j]

    def __dealloc__(self):
        cdef Py_ssize_t j
        if self.owns:
            mg_mem_put(self.d)
        mg_mem_put(self.saved)
        if self.parents != NULL:
            for j in range(self.n_parents):
                _release(self.parents[j])
            mg_mem_put(self.parents)

    def __len__(self):
        return self.n

    @property
    def data(self):
        """The values, a list of floats."""
        return [self.d[j] for j in range(self.n)]

    @property
    def grad(self):
        """The gradients, a list of floats (accumulated across backward calls, as a Val's)."""
        return [self.g[j] for j in range(self.n)]

    def __getitem__(self, Py_ssize_t i):
        """Element i as a Val whose gradient flows back into this Vec (see _element_back)."""
        cdef Val v
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("Vec index out of range")
        v = _node(self.d[i], VEC)
        v.e.n = 1
        Py_INCREF(self)
        v.e.r.vec.vec = <PyObject*>self
        v.e.r.vec.off = i
        return v

    def __repr__(self):
        return f"Vec({self.data!r})"


cdef Vec _vec_alloc(Vec v, Py_ssize_t n, int op):
    """Give v n owned doubles (grads zero), op, and the next sequence number."""
    global _next_seq
    v.d = <double*>mg_mem_get((2 * n if n > 0 else 1) * sizeof(double))
    if v.d == NULL:
        raise MemoryError()
    v.g = v.d + n
    memset(v.g, 0, n * sizeof(double))
    v.n = n
    v.owns = True
    v.op = op
    v.seq = _next_seq
    _next_seq += 1
    return v


cdef Vec _vec_new(Py_ssize_t n, int op, Py_ssize_t n_parents):
    """A fresh interior Vec of n values; the caller fills in its n_parents parents."""
    cdef Vec v = Vec.__new__(Vec)
    _vec_alloc(v, n, op)
    v.parents = <PyObject**>mg_mem_get((n_parents if n_parents > 0 else 1) * sizeof(PyObject*))
    if v.parents == NULL:
        raise MemoryError()
    return v


cdef inline void _vec_parent(Vec v, Vec p) noexcept:
    Py_INCREF(p)
    v.parents[v.n_parents] = <PyObject*>p
    v.n_parents += 1


cdef inline Vec _vec_arg(object o, str where):
    if type(o) is not Vec:
        raise TypeError(f"{where}: expected a Vec, got {type(o).__name__}")
    return <Vec>o


cdef Vec _row(ValMatrix W, Py_ssize_t i):
    cdef Vec v
    if W.pk.st == NULL:
        raise TypeError("ValMatrix.row: the matrix holds interior nodes, not weights (leaves)")
    if i < 0:
        i += W.rows
    if not 0 <= i < W.rows:
        raise IndexError("ValMatrix row out of range")
    v = Vec.__new__(Vec)
    v.d = W.pk.st.data + i * W.cols
    v.g = W.pk.st.grad + i * W.cols
    v.n = W.cols
    v.op = V_LEAF
    v.owner = W
    return v


# ---------------------------------------------------------------------------------------------
# vadd: y = a + b

cdef Vec _vec_add(Vec a, Vec b):
    cdef Vec v
    cdef Py_ssize_t j
    if a.n != b.n:
        raise ValueError(f"vadd: lengths {a.n} and {b.n} differ")
    v = _vec_new(a.n, V_ADD, 2)
    for j in range(a.n):
        v.d[j] = a.d[j] + b.d[j]
    _vec_parent(v, a)
    _vec_parent(v, b)
    return v


cdef int _vec_add_back(Vec v) except -1:
    """The backward of y = a + b: a.g += y.g, b.g += y.g."""
    cdef Py_ssize_t i, j
    cdef Vec x
    for i in range(2):
        x = <Vec>v.parents[i]
        for j in range(v.n):
            x.g[j] += v.g[j]
    return 0


def vadd(a, b):
    """[a_i + b_i]: the elementwise sum of two equal-length lists of Vals, or of two Vecs."""
    if type(a) is Vec and type(b) is Vec:
        return _vec_add(<Vec>a, <Vec>b)
    cdef Py_ssize_t n = len(a), i
    cdef Val x, y
    if len(b) != n:
        raise ValueError(f"vadd: lengths {n} and {len(b)} differ")
    out = [None] * n
    for i in range(n):
        x = _as_val(a[i])
        y = _as_val(b[i])
        out[i] = _binary(x.pd[0] + y.pd[0], x, 1.0, y, 1.0)
    return out


# ---------------------------------------------------------------------------------------------
# rmsnorm: y = x s, s = (mean(x^2) + eps)^-1/2

cdef Vec _vec_rmsnorm(Vec x, double eps):
    cdef Vec v
    if x.n == 0:
        raise ValueError("rmsnorm of an empty Vec")
    v = _vec_new(x.n, V_RMSNORM, 1)
    v.scale = mg_rmsnorm(x.d, v.d, x.n, eps)
    _vec_parent(v, x)
    return v


cdef int _vec_rmsnorm_back(Vec v) except -1:
    """The backward of y = x s (s saved in v.scale; ds/dx_j = -x_j s^3 / n)."""
    cdef Vec x = <Vec>v.parents[0]
    mg_rmsnorm_back(x.d, x.g, v.g, v.n, v.scale)
    return 0


def rmsnorm(x, double eps=1e-5):
    """x * (mean(x^2) + eps)^-1/2 as len(x) Vals (no learned scale); as one Vec for a Vec.

    The factor s is one shared node (ds/dx_j = -x_j s^3 / n); y_i = x_i * s has two parents.
    """
    if type(x) is Vec:
        return _vec_rmsnorm(<Vec>x, eps)
    cdef Pack* pk = _pack_seq(x, -1)
    cdef Py_ssize_t n = pk.n, j
    cdef double ms = 0.0, s, xj
    cdef double* ds
    cdef Val s_node
    cdef list out
    try:
        if n == 0:
            raise ValueError("rmsnorm of an empty list")
        for j in range(n):
            xj = D(pk.items[j])
            ms += xj * xj
        ms /= n
        s = 1.0 / sqrt(ms + eps)
        ds = _doubles(n)
        for j in range(n):
            ds[j] = -D(pk.items[j]) * s * s * s / n
        s_node = _weighted(s, pk, ds)
        out = [None] * n
        for j in range(n):
            xj = D(pk.items[j])
            out[j] = _binary(xj * s, <Val>pk.items[j], s, s_node, xj)
        return out
    finally:
        _pack_release(pk)


# ---------------------------------------------------------------------------------------------
# linear: y = relu?(scale W x)

cdef Vec _vec_linear(Vec x, ValMatrix W, double scale, bint relu):
    cdef Vec v
    cdef Py_ssize_t n = x.n
    if W.cols != n:
        raise ValueError(f"linear: W has {W.cols} columns, x has {n} values")
    if W.pk.st == NULL:
        raise TypeError("linear: a Vec input needs a ValMatrix of weights (leaves)")
    v = _vec_new(W.rows, V_LINEAR, 1)
    mg_linear(W.pk.st.data, x.d, v.d, W.rows, n, scale, relu)   # v.d is new: apart from both
    v.W = W
    v.scale = scale
    v.relu = relu
    _vec_parent(v, x)
    return v


cdef int _vec_linear_back(Vec v) except -1:
    """The backward of y = relu?(scale W x): x.g += W^T g', W's grad += g' x^T, g' = scale y.g
    where y > 0."""
    cdef Vec x = <Vec>v.parents[0]
    cdef Py_ssize_t j, n = v.n, cols = x.n
    cdef double* w = v.W.pk.st.data
    cdef double* wg = v.W.pk.st.grad
    cdef double* tmp
    if not (_overlap(x.d, cols, wg, n * cols) or _overlap(x.g, cols, w, n * cols)
            or _overlap(x.g, cols, wg, n * cols)):
        mg_linear_back(w, wg, x.d, x.g, v.g, v.d, n, cols, v.scale, v.relu)
    else:                                  # x is a row of W itself: work on copies of x
        tmp = <double*>calloc(2 * cols, sizeof(double))
        if tmp == NULL:
            raise MemoryError()
        memcpy(tmp, x.d, cols * sizeof(double))
        mg_linear_back(w, wg, tmp, tmp + cols, v.g, v.d, n, cols, v.scale, v.relu)
        for j in range(cols):
            x.g[j] += tmp[cols + j]
        free(tmp)
    return 0


def linear(x, W, double scale=1.0, bint relu=False):
    """W·x as len(W) Vals: out_i = scale * sum_j W[i][j] * x[j], one node per output.

    W is a ValMatrix or a sequence of equal-length rows. Every output shares the packed x and W,
    so a layer costs one small node per output, not two nodes per multiply-add. relu=True gives
    relu(out_i) in the same node (d/d out_i = 1 if out_i > 0 else 0).
    With x a Vec (and W a ValMatrix of weights), the output is one Vec.
    """
    if type(x) is Vec:
        if type(W) is not ValMatrix:
            raise TypeError("linear: a Vec input needs a ValMatrix of weights")
        return _vec_linear(<Vec>x, <ValMatrix>W, scale, relu)
    cdef Pack* px = _pack_seq(x, -1)
    cdef Pack* pw = NULL
    cdef Py_ssize_t n = px.n, m, i
    cdef list out
    try:
        if type(W) is ValMatrix:
            if (<ValMatrix>W).cols != n:
                raise ValueError(f"linear: W has {(<ValMatrix>W).cols} columns, x has {n} Vals")
            pw = (<ValMatrix>W).pk
            pw.refcnt += 1
            m = (<ValMatrix>W).rows
        else:
            pw = _pack_rows(W, n, &m)
        out = [None] * m
        for i in range(m):
            out[i] = _dot_node(pw, i * n, px, n, scale, relu)
        return out
    finally:
        _pack_release(px)
        if pw != NULL:
            _pack_release(pw)


# ---------------------------------------------------------------------------------------------
# attention: out_h = sum_t softmax_t(scale q_h . k_t,h) v_t,h, every head in one node

cdef Vec _vec_attention(Vec q, list keys, list values, Py_ssize_t heads, double scale):
    """Causal attention of one query over the cached keys and values, every head in one node."""
    cdef Py_ssize_t T = len(keys), n = q.n, hd, h, t
    cdef Vec v
    cdef const double** kv
    if T == 0 or len(values) != T:
        raise ValueError(f"attention: {T} keys and {len(values)} values (need as many, at least 1)")
    if heads < 1 or n % heads:
        raise ValueError(f"attention: {n} values do not split into {heads} heads")
    for t in range(T):
        if _vec_arg(keys[t], "attention").n != n or _vec_arg(values[t], "attention").n != n:
            raise ValueError(f"attention: every key and value must have {n} values, like q")
    hd = n // heads
    v = _vec_new(n, V_ATTENTION, 1 + 2 * T)
    # the weights (heads x T, kept for backward), scratch (T), then the keys' and the values'
    # arrays and gradients (4 T pointers)
    v.saved = <double*>mg_mem_get(heads * T * sizeof(double) + T * sizeof(double)
                                  + 4 * T * sizeof(double*))
    if v.saved == NULL:
        raise MemoryError()
    _vec_parent(v, q)
    for t in range(T):
        _vec_parent(v, <Vec>keys[t])
    for t in range(T):
        _vec_parent(v, <Vec>values[t])
    v.heads = heads
    v.scale = scale
    kv = _kv_pointers(v, v.saved + heads * T + T, T)
    for h in range(heads):                     # out_h = sum_t softmax_t(scale q_h . k_t,h) v_t,h
        mg_attend(q.d + h * hd, kv, kv + 2 * T, h * hd, T, hd, scale, v.saved + h * T,
                  v.d + h * hd)
    return v


cdef const double** _kv_pointers(Vec v, double* at, Py_ssize_t T) noexcept:
    """At `at`, the arrays of v's T key and T value parents (after its first): the keys',
    their gradients, the values', theirs (T pointers each)."""
    cdef double** kv = <double**>at
    cdef Py_ssize_t t
    for t in range(T):
        kv[t] = (<Vec>v.parents[1 + t]).d
        kv[T + t] = (<Vec>v.parents[1 + t]).g
        kv[2 * T + t] = (<Vec>v.parents[1 + T + t]).d
        kv[3 * T + t] = (<Vec>v.parents[1 + T + t]).g
    return <const double**>kv


cdef int _vec_attention_back(Vec v) except -1:
    """The backward of attention: into the query and every key and value."""
    cdef Vec q = <Vec>v.parents[0]
    cdef Py_ssize_t T = (v.n_parents - 1) // 2
    cdef double** kv = <double**>(v.saved + v.heads * T + T)
    mg_attention_back(<const double* const*>kv, kv + T, <const double* const*>(kv + 2 * T),
                      kv + 3 * T, T, v.heads, v.n // v.heads, v.scale, v.saved, v.g, q.d, q.g,
                      v.saved + v.heads * T)
    return 0


def attention(q, keys, values, Py_ssize_t heads, scale=None):
    """Causal self-attention of one position, every head at once, as one Vec.

    q: this position's query (a Vec of n); keys, values: lists of Vecs of n, one per position so
    far, this one's included. Head h takes the slice [h n/heads, (h+1) n/heads) of each:
    out_h = sum_t softmax_t(scale q_h . k_t,h) v_t,h, scale = 1/sqrt(n/heads) unless given.
    """
    cdef Vec qv = _vec_arg(q, "attention")
    if heads < 1 or qv.n % heads:
        raise ValueError(f"attention: {qv.n} values do not split into {heads} heads")
    return _vec_attention(qv, list(keys), list(values), heads,
                          1.0 / sqrt(<double>(qv.n // heads)) if scale is None else <double>scale)


# ---------------------------------------------------------------------------------------------
# A transformer block's two halves, one node each, with the same numbers, forward and
# backward, as the separate ops above in the same order. First, their weights:

cdef inline double* _data(object W) noexcept:
    return (<ValMatrix>W).pk.st.data


cdef inline double* _grad(object W) noexcept:
    return (<ValMatrix>W).pk.st.grad


cdef ValMatrix _leaves(object W, str where):
    """W, checked to be a ValMatrix of weights (leaves, whose arrays the kernels read)."""
    if type(W) is not ValMatrix or (<ValMatrix>W).pk.st == NULL:
        raise TypeError(f"{where}: the weights must be ValMatrix weights (leaves)")
    return <ValMatrix>W


cdef ValMatrix _square(object W, Py_ssize_t rows, Py_ssize_t cols, str where):
    """W, checked to be a rows x cols ValMatrix of weights."""
    _leaves(W, where)
    if (<ValMatrix>W).rows != rows or (<ValMatrix>W).cols != cols:
        raise ValueError(f"{where}: a weight matrix is {(<ValMatrix>W).rows} x "
                         f"{(<ValMatrix>W).cols}, expected {rows} x {cols}")
    return <ValMatrix>W


# ---------------------------------------------------------------------------------------------
# attention_block: the attention half (rmsnorm, wq wk wv, attention, wo, the residual sum)

def attention_block(x, wq, wk, wv, wo, list keys, list values, Py_ssize_t heads,
                    double eps=1e-5):
    """x + wo . attention(wq . xn, keys + [wk . xn], values + [wv . xn]), xn = rmsnorm(x, eps),
    as one Vec; appends this position's key and value (Vecs of n) to keys and values.

    The same numbers, forward and backward, as the separate ops (rmsnorm, linear, attention,
    vadd) in that order, with one node instead of seven; the key and the value are Vecs whose
    gradient later positions' attention adds to, and whose backward this node does.
    """
    cdef Vec xv = _vec_arg(x, "attention_block"), v, k, vl
    cdef Py_ssize_t E = xv.n, T = len(keys) + 1, t, n
    cdef const double* w[4]
    cdef const double** kv
    cdef double* a
    cdef double* inside
    if heads < 1 or E % heads:
        raise ValueError(f"attention_block: {E} values do not split into {heads} heads")
    if len(values) != T - 1:
        raise ValueError(f"attention_block: {T - 1} keys and {len(values)} values")
    for t in range(T - 1):
        if _vec_arg(keys[t], "attention_block").n != E or _vec_arg(values[t], "attention_block").n != E:
            raise ValueError(f"attention_block: every key and value must have {E} values, like x")
    Ws = (_square(wq, E, E, "attention_block"), _square(wk, E, E, "attention_block"),
          _square(wv, E, E, "attention_block"), _square(wo, E, E, "attention_block"))
    k = _vec_alloc(Vec.__new__(Vec), E, V_PART)
    vl = _vec_alloc(Vec.__new__(Vec), E, V_PART)
    v = _vec_new(E, V_ATTENTION_BLOCK, 1 + 2 * T)
    # the weights (heads x T), the insides (xn xng q qg att attg o og, E each), s, scratch (T),
    # then 4 T pointers (_kv_pointers)
    n = heads * T + MG_ATTENTION_INSIDES * E + 1 + T
    v.saved = <double*>mg_mem_get(n * sizeof(double) + 4 * T * sizeof(double*))
    if v.saved == NULL:
        raise MemoryError()
    memset(v.saved, 0, n * sizeof(double))
    _vec_parent(v, xv)
    for t in range(T - 1):
        _vec_parent(v, <Vec>keys[t])
    _vec_parent(v, k)
    for t in range(T - 1):
        _vec_parent(v, <Vec>values[t])
    _vec_parent(v, vl)
    kv = _kv_pointers(v, v.saved + n, T)
    for t in range(4):
        w[t] = _data(Ws[t])
    v.Ws = Ws
    v.heads = heads
    a = v.saved
    inside = a + heads * T
    inside[MG_ATTENTION_INSIDES * E] = mg_attention_block(
        xv.d, v.d, w, inside, inside + 2 * E, k.d, vl.d, kv, kv + 2 * T, T, E, heads, eps, a,
        inside + 4 * E, inside + 6 * E)
    keys.append(k)
    values.append(vl)
    return v


cdef int _attention_block_back(Vec v) except -1:
    """The attention block's backward (mg_attention_block_back)."""
    cdef Py_ssize_t E = v.n, T = (v.n_parents - 1) // 2, i
    cdef Vec x = <Vec>v.parents[0]
    cdef double* a = v.saved                        # heads x T, the insides, s, scratch (T)
    cdef double* inside = a + v.heads * T
    cdef double* ga = inside + MG_ATTENTION_INSIDES * E + 1
    cdef double** kv = <double**>(ga + T)
    cdef const double* w[4]
    cdef double* wg[4]
    for i in range(4):
        w[i] = _data(v.Ws[i])
        wg[i] = _grad(v.Ws[i])
    mg_attention_block_back(x.d, x.g, v.g, w, wg, inside, a, inside[MG_ATTENTION_INSIDES * E],
                            <const double* const*>kv, kv + T, <const double* const*>(kv + 2 * T),
                            kv + 3 * T, T, E, v.heads, ga)
    return 0


# ---------------------------------------------------------------------------------------------
# mlp_block: the MLP half (rmsnorm, fc1, relu, fc2, the residual sum)

def mlp_block(x, fc1, fc2, double eps=1e-5):
    """x + fc2 . relu(fc1 . rmsnorm(x, eps)) as one Vec: the same numbers, forward and backward,
    as the separate ops (rmsnorm, linear, linear, vadd), with one node instead of four."""
    cdef Vec xv = _vec_arg(x, "mlp_block"), v
    cdef Py_ssize_t E = xv.n, n_ff = _leaves(fc1, "mlp_block").rows
    Ws = (_square(fc1, n_ff, E, "mlp_block"), _square(fc2, E, n_ff, "mlp_block"))
    v = _vec_new(E, V_MLP_BLOCK, 1)
    v.saved = <double*>mg_mem_get(MG_MLP_INSIDES(E, n_ff) * sizeof(double))  # xn xng o og, h hg
    if v.saved == NULL:
        raise MemoryError()
    memset(v.saved, 0, MG_MLP_INSIDES(E, n_ff) * sizeof(double))
    _vec_parent(v, xv)
    v.Ws = Ws
    v.scale = mg_mlp_block(xv.d, v.d, _data(fc1), _data(fc2), v.saved, v.saved + 4 * E,
                           v.saved + 2 * E, E, n_ff, eps)
    return v


cdef int _mlp_block_back(Vec v) except -1:
    """The MLP block's backward (mg_mlp_block_back)."""
    cdef Vec x = <Vec>v.parents[0]
    cdef object fc1 = v.Ws[0], fc2 = v.Ws[1]
    mg_mlp_block_back(x.d, x.g, v.g, _data(fc1), _grad(fc1), _data(fc2), _grad(fc2), v.saved,
                      v.scale, v.n, (<ValMatrix>fc1).rows)
    return 0


# ---------------------------------------------------------------------------------------------
# cross_entropy and v[i]: a Val made from a Vec (a VEC node)

cdef Val _vec_cross_entropy(Vec x, Py_ssize_t target):
    cdef double lse
    cdef double* p
    cdef Val out
    if not 0 <= target < x.n:
        raise IndexError(f"cross_entropy: target {target} outside {x.n} logits")
    p = <double*>mg_mem_get(x.n * sizeof(double))
    if p == NULL:
        raise MemoryError()
    memcpy(p, x.d, x.n * sizeof(double))
    lse = mg_softmax(p, x.n)
    p[target] -= 1.0                           # d/dx_j = softmax_j - [j == target]
    try:
        out = _node(lse - x.d[target], VEC)
    except BaseException:
        mg_mem_put(p)
        raise
    out.e.n = x.n
    Py_INCREF(x)
    out.e.r.vec.vec = <PyObject*>x
    out.e.r.vec.ds = p
    return out


cdef inline int _element_back(Edges* e, double g, Queue* q, unsigned long long epoch) except -1:
    """The backward of a Val made from a Vec (a VEC node: `v[i]`, or a Vec's `cross_entropy`):
    elements off .. off + n - 1 of the Vec get g ds_j (ds NULL: g, an element's view)."""
    cdef Py_ssize_t j
    cdef double* vg = (<Vec>e.r.vec.vec).g + e.r.vec.off
    if e.r.vec.ds == NULL:
        for j in range(e.n):
            vg[j] += g
    else:
        for j in range(e.n):
            vg[j] += g * e.r.vec.ds[j]
    _visit_vec(e.r.vec.vec, q, epoch)
    return 0


def cross_entropy(logits, Py_ssize_t target):
    """-log softmax(logits)[target] as one Val (d/dx_j = softmax_j - [j == target]); logits is a
    list of Vals or a Vec."""
    if type(logits) is Vec:
        return _vec_cross_entropy(<Vec>logits, target)
    cdef Pack* pk = _pack_seq(logits, -1)
    cdef double* p
    cdef double lse
    try:
        if not 0 <= target < pk.n:
            raise IndexError(f"cross_entropy: target {target} outside {pk.n} logits")
        p = _doubles(pk.n)
        lse = _log_sum_exp(pk, p)
        p[target] -= 1.0
        return _weighted(lse - D(pk.items[target]), pk, p)
    finally:
        _pack_release(pk)


# ---------------------------------------------------------------------------------------------
# A name's positions at once: embed_seq, attention_seq, mlp_seq, loss_seq. GPT.loss is these, one
# node each per layer half, instead of one node per position and op; the kernels say why the
# numbers, forward and backward, are that graph's to the bit.

cdef Py_ssize_t* _indices(object values, Py_ssize_t below, Py_ssize_t* n, str what) except NULL:
    """values (ints in [0, below)) as a new array from mg_mem_get; n gets their number."""
    cdef list vals = list(values)
    cdef Py_ssize_t i, x
    cdef Py_ssize_t* out
    n[0] = len(vals)
    out = <Py_ssize_t*>mg_mem_get((n[0] if n[0] > 0 else 1) * sizeof(Py_ssize_t))
    if out == NULL:
        raise MemoryError()
    try:
        for i in range(n[0]):
            x = vals[i]
            if not 0 <= x < below:
                raise IndexError(f"{what} {x} outside 0 .. {below - 1}")
            out[i] = x
    except BaseException:
        mg_mem_put(out)
        raise
    return out


cdef Vec _seq_node(Py_ssize_t n, int op, tuple Ws, size_t saved, Vec x):
    """A new Vec of n values, its weights Ws, saved bytes zeroed, parent x (None: no parent).
    Its positions need not be kept: they are its input's values (or its own) over the first
    weight matrix's columns."""
    cdef Vec v = _vec_new(n, op, 1 if x is not None else 0)
    v.saved = <double*>mg_mem_get(saved if saved > 0 else 1)
    if v.saved == NULL:
        raise MemoryError()
    memset(v.saved, 0, saved)
    v.Ws = Ws
    if x is not None:
        _vec_parent(v, x)
    return v


cdef Py_ssize_t _positions(Vec x, Py_ssize_t E, str where) except -1:
    """The positions of x, E values each (E >= 1: weights always have columns)."""
    if x.n == 0 or x.n % E:
        raise ValueError(f"{where}: {x.n} values are not whole positions of {E}")
    return x.n // E


def embed_seq(wte, wpe, tokens):
    """wte[tokens[t]] + wpe[t] for every position t, as one Vec of len(tokens) x n_emb values:
    the numbers of vadd(wte.row(token), wpe.row(t)), position by position."""
    cdef ValMatrix te = _leaves(wte, "embed_seq")
    cdef ValMatrix pe = _square(wpe, _leaves(wpe, "embed_seq").rows, te.cols, "embed_seq")
    cdef Py_ssize_t T, E = te.cols
    cdef Py_ssize_t* ids = _indices(tokens, te.rows, &T, "embed_seq: token")
    cdef Vec v
    try:
        if not 0 < T <= pe.rows:
            raise ValueError(f"embed_seq: {T} tokens, expected 1 to {pe.rows} (wpe's rows)")
        v = _seq_node(T * E, V_EMBED_SEQ, (te, pe), T * sizeof(Py_ssize_t), None)
        memcpy(v.saved, ids, T * sizeof(Py_ssize_t))       # saved: the tokens
    finally:
        mg_mem_put(ids)
    mg_embed_seq(te.pk.st.data, pe.pk.st.data, <Py_ssize_t*>v.saved, T, E, v.d)
    return v


cdef int _embed_seq_back(Vec v) except -1:
    cdef Py_ssize_t E = (<ValMatrix>v.Ws[0]).cols
    mg_embed_seq_back(_grad(v.Ws[0]), _grad(v.Ws[1]), <Py_ssize_t*>v.saved, v.n // E, E, v.g)
    return 0


def attention_seq(x, wq, wk, wv, wo, Py_ssize_t heads, double eps=1e-5):
    """attention_block at every position of x (positions x n_emb values, one Vec), each position
    attending over itself and the positions before it, as one Vec."""
    cdef Vec xv = _vec_arg(x, "attention_seq"), v
    cdef Py_ssize_t E = _leaves(wq, "attention_seq").cols, T, t
    cdef const double* w[4]
    if heads < 1 or E % heads:
        raise ValueError(f"attention_seq: {E} values do not split into {heads} heads")
    Ws = (_square(wq, E, E, "attention_seq"), _square(wk, E, E, "attention_seq"),
          _square(wv, E, E, "attention_seq"), _square(wo, E, E, "attention_seq"))
    T = _positions(xv, E, "attention_seq")
    v = _seq_node(xv.n, V_ATTENTION_SEQ, Ws, mg_attention_seq_size(T, E, heads), xv)
    v.heads = heads
    for t in range(4):
        w[t] = _data(Ws[t])
    mg_attention_seq(xv.d, v.d, w, T, E, heads, eps, v.saved)
    return v


cdef int _attention_seq_back(Vec v) except -1:
    cdef Vec x = <Vec>v.parents[0]
    cdef Py_ssize_t E = (<ValMatrix>v.Ws[0]).cols, i
    cdef const double* w[4]
    cdef double* wg[4]
    for i in range(4):
        w[i] = _data(v.Ws[i])
        wg[i] = _grad(v.Ws[i])
    mg_attention_seq_back(x.d, x.g, v.g, w, wg, x.n // E, E, v.heads, v.saved)
    return 0


def mlp_seq(x, fc1, fc2, double eps=1e-5):
    """mlp_block at every position of x (positions x n_emb values, one Vec), as one Vec."""
    cdef Vec xv = _vec_arg(x, "mlp_seq"), v
    cdef ValMatrix W1 = _leaves(fc1, "mlp_seq")
    cdef Py_ssize_t E = W1.cols, n_ff = W1.rows, T
    Ws = (W1, _square(fc2, E, n_ff, "mlp_seq"))
    T = _positions(xv, E, "mlp_seq")
    v = _seq_node(xv.n, V_MLP_SEQ, Ws, mg_mlp_seq_size(T, E, n_ff), xv)
    mg_mlp_seq(xv.d, v.d, _data(fc1), _data(fc2), T, E, n_ff, eps, v.saved)
    return v


cdef int _mlp_seq_back(Vec v) except -1:
    cdef Vec x = <Vec>v.parents[0]
    cdef ValMatrix W1 = <ValMatrix>v.Ws[0]
    mg_mlp_seq_back(x.d, x.g, v.g, _data(W1), _grad(W1), _data(v.Ws[1]), _grad(v.Ws[1]),
                    x.n // W1.cols, W1.cols, W1.rows, v.saved)
    return 0


# loss_seq's saved: the kernel's insides, then the cross-entropies' gradient (one double), then
# the targets.
cdef inline double* _loss_ce_grad(Vec v, Py_ssize_t T, Py_ssize_t E, Py_ssize_t V) noexcept:
    return <double*>(<char*>v.saved + mg_loss_seq_size(T, E, V))


cdef inline Py_ssize_t* _loss_targets(Vec v, Py_ssize_t T, Py_ssize_t E, Py_ssize_t V) noexcept:
    return <Py_ssize_t*>(_loss_ce_grad(v, T, E, V) + 1)


def loss_seq(x, lm_head, targets, double eps=1e-5):
    """The mean over positions t of cross_entropy(linear(rmsnorm(x[t]), lm_head), targets[t]),
    as a Val (element 0 of a one-value Vec): the numbers of vsum(those losses, 1 / positions)."""
    cdef Vec xv = _vec_arg(x, "loss_seq"), v
    cdef ValMatrix lm = _leaves(lm_head, "loss_seq")
    cdef Py_ssize_t E = lm.cols, V = lm.rows, T = _positions(xv, lm.cols, "loss_seq"), n
    cdef Py_ssize_t* ids = _indices(targets, V, &n, "loss_seq: target")
    try:
        if n != T:
            raise ValueError(f"loss_seq: {n} targets for {T} positions")
        v = _seq_node(1, V_LOSS_SEQ, (lm,),
                      mg_loss_seq_size(T, E, V) + sizeof(double) + T * sizeof(Py_ssize_t), xv)
        memcpy(_loss_targets(v, T, E, V), ids, T * sizeof(Py_ssize_t))
    finally:
        mg_mem_put(ids)
    v.scale = 1.0 / T
    v.d[0] = mg_loss_seq(xv.d, lm.pk.st.data, _loss_targets(v, T, E, V), T, E, V, eps,
                         v.saved) * v.scale
    return v[0]


cdef int _loss_seq_back(Vec v) except -1:
    """Each cross-entropy's gradient grows by g / T a pass, as vsum's backward adds it. So that a
    pass adds only its own g, the node's gradient is used up (it is no one else's: the loss is
    v[0], whose own gradient accumulates)."""
    cdef Vec x = <Vec>v.parents[0]
    cdef ValMatrix lm = <ValMatrix>v.Ws[0]
    cdef Py_ssize_t E = lm.cols, T = x.n // lm.cols
    cdef double* ce_g = _loss_ce_grad(v, T, E, lm.rows)
    ce_g[0] += v.g[0] * v.scale
    v.g[0] = 0.0
    mg_loss_seq_back(x.d, x.g, ce_g[0], _data(lm), _grad(lm), T, E, lm.rows, v.saved)
    return 0


# =============================================================================================
# 6. The backward sweep: pop the newest node, add its grad into its parents' by its own backward
# (written under its forward, above), queue the parents; repeat until the queue is empty.
# =============================================================================================

cdef int _vec_backward(Vec v, Queue* q, unsigned long long epoch) except -1:
    """Add v's gradient into its parents' (and its weights') by its op's backward; queue the
    parents."""
    cdef Py_ssize_t i
    if v.op == V_ADD:
        _vec_add_back(v)
    elif v.op == V_RMSNORM:
        _vec_rmsnorm_back(v)
    elif v.op == V_LINEAR:
        _vec_linear_back(v)
    elif v.op == V_ATTENTION:
        _vec_attention_back(v)
    elif v.op == V_ATTENTION_BLOCK:
        _attention_block_back(v)
    elif v.op == V_MLP_BLOCK:
        _mlp_block_back(v)
    elif v.op == V_EMBED_SEQ:
        _embed_seq_back(v)
    elif v.op == V_ATTENTION_SEQ:
        _attention_seq_back(v)
    elif v.op == V_MLP_SEQ:
        _mlp_seq_back(v)
    elif v.op == V_LOSS_SEQ:
        _loss_seq_back(v)
    for i in range(v.n_parents):
        _visit_vec(v.parents[i], q, epoch)
    return 0


cdef inline int _val_backward(Val v, Queue* q, unsigned long long epoch) except -1:
    """Add v's gradient into its parents' by its kind's backward; queue the parents."""
    cdef Edges* e = v.e
    cdef double g = v.pg[0]
    if e.kind == EDGES:
        return _edges_back(e, g, q, epoch)
    if e.kind == WEIGHTED:
        return _weighted_back(e, g, q, epoch)
    if e.kind == DOT:
        return _dot_back(e, g, q, epoch)
    return _element_back(e, g, q, epoch)        # VEC


cdef int _backward(Val root) except -1:
    """Reverse-mode sweep from root, newest node first, each interior node exactly once.

    A node is newer than all its parents, so when it is popped every node that uses it has
    already added its share: its grad is final and can be pushed down.
    """
    global _epoch
    cdef Queue q
    cdef Py_ssize_t j
    cdef PyObject* o
    if root.e == NULL:
        return 0
    _epoch += 1
    memset(&q, 0, sizeof(Queue))
    for j in range(QUEUE_BUCKETS):
        q.b[j].items = _buckets[j].items
        q.b[j].cap = _buckets[j].cap
    q.last = root.e.seq
    try:
        _visit(<PyObject*>root, &q, _epoch)
        while q.size > 0:
            _q_pop(&q, &o)
            if _type_of(o) == <PyTypeObject*>Vec:
                _vec_backward(<Vec>o, &q, _epoch)
            else:
                _val_backward(<Val>o, &q, _epoch)
    finally:
        for j in range(QUEUE_BUCKETS):
            if q.b[j].cap > KEPT_ENTRIES_MAX:  # a huge graph's: give it back
                free(q.b[j].items)
                q.b[j].items = NULL
                q.b[j].cap = 0
            _buckets[j].items = q.b[j].items
            _buckets[j].cap = q.b[j].cap
    return 0


def graph_size(Val root):
    """(interior nodes, edges) of the graph below root: what one backward pass walks. A Vec is
    one node; its edges count its parents (and, for `linear`, the weight matrix)."""
    global _epoch
    cdef list stack = [root]
    cdef Py_ssize_t nodes = 0, edges = 0, j
    cdef Val v
    cdef Vec w
    cdef Edges* e
    if root.e == NULL:
        return (0, 0)
    _epoch += 1
    root.e.mark = _epoch
    while stack:
        node = stack.pop()
        nodes += 1
        if type(node) is Vec:
            w = <Vec>node
            parents = [<object>w.parents[j] for j in range(w.n_parents)]
            edges += len(parents) + (w.W is not None) + (len(w.Ws) if w.Ws is not None else 0)
        else:
            v = <Val>node
            e = v.e
            if e.kind == EDGES:
                parents = [<object>e.r.two.p0] if e.n == 1 else [<object>e.r.two.p0, <object>e.r.two.p1]
            elif e.kind == WEIGHTED:
                parents = [<object>e.r.w.pa.items[j] for j in range(e.n)]
            elif e.kind == VEC:
                parents = [<object>e.r.vec.vec]
            else:
                parents = [<object>e.r.dot.pa.items[e.r.dot.oa + j] for j in range(e.n)]
                if e.r.dot.pb != NULL:
                    parents += [<object>e.r.dot.pb.items[j] for j in range(e.n)]
            edges += len(parents)
        for p in parents:
            if type(p) is Vec:
                w = <Vec>p
                if w.op != V_LEAF and w.op != V_PART and w.mark != _epoch:
                    w.mark = _epoch
                    stack.append(p)
                continue
            e = (<Val>p).e
            if e != NULL and e.mark != _epoch:
                e.mark = _epoch
                stack.append(p)
    return (nodes, edges)


# =============================================================================================
# 7. Adam, sampling's draw, and the Decoder: plain arrays, no graph.
# =============================================================================================

def adam_step(ValMatrix params not None, double[::1] m, double[::1] v, double lr,
              double beta1, double beta2, double eps, Py_ssize_t t):
    """Apply one bias-corrected Adam step (t counts from 1) to every param, then zero its grad.

    m and v are the first and second moment buffers, one float64 per param, updated in place.
    """
    cdef Py_ssize_t n = params.pk.n
    if m.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"adam_step: {n} params but moments of length {m.shape[0]}, {v.shape[0]}")
    if t < 1:
        raise ValueError("adam_step: t counts from 1")
    if n == 0:
        return
    _separate(params, &m[0], &v[0], "adam_step")
    _adam(params, &m[0], &v[0], lr, beta1, beta2, eps,
          1.0 / (1.0 - mg_powi(beta1, t)), 1.0 / (1.0 - mg_powi(beta2, t)))


def adam_steps(groups, double lr, double beta1, double beta2, double eps, Py_ssize_t t):
    """adam_step over each (params, m, v) of groups, m and v each an `array('d')`: one call a
    training step instead of one per weight matrix, each group's numbers adam_step's."""
    cdef ValMatrix params
    cdef array.array m, v
    cdef double c1, c2
    cdef list checked = []
    if t < 1:
        raise ValueError("adam_steps: t counts from 1")
    for group in groups:                            # every group checked before any is updated
        params_, m_, v_ = group
        if type(params_) is not ValMatrix:
            raise TypeError("adam_steps: the params must be a ValMatrix")
        if (type(m_) is not array.array or type(v_) is not array.array
                or (<array.array>m_).ob_descr.typecode != c'd'
                or (<array.array>v_).ob_descr.typecode != c'd'):
            raise TypeError("adam_steps: the moments must be array('d')")
        params, m, v = params_, m_, v_
        if Py_SIZE(m) != params.pk.n or Py_SIZE(v) != params.pk.n:
            raise ValueError(f"adam_steps: {params.pk.n} params but moments of length "
                             f"{Py_SIZE(m)}, {Py_SIZE(v)}")
        _separate(params, m.data.as_doubles, v.data.as_doubles, "adam_steps")
        checked.append((params, m, v))
    c1 = 1.0 / (1.0 - mg_powi(beta1, t))           # bias corrections, as factors
    c2 = 1.0 / (1.0 - mg_powi(beta2, t))
    for params, m, v in checked:
        _adam(params, m.data.as_doubles, v.data.as_doubles, lr, beta1, beta2, eps, c1, c2)


cdef int _separate(ValMatrix params, double* m, double* v, str where) except -1:
    """ValueError unless m, v and the params' arrays (n doubles each) are apart."""
    cdef Py_ssize_t n = params.pk.n
    if n > 0 and (_overlap(m, n, v, n) or params.pk.st != NULL and (
            _overlap(m, n, params.pk.st.data, n) or _overlap(m, n, params.pk.st.grad, n)
            or _overlap(v, n, params.pk.st.data, n) or _overlap(v, n, params.pk.st.grad, n))):
        raise ValueError(f"{where}: m, v and the params must be separate arrays")
    return 0


cdef void _adam(ValMatrix params, double* m, double* v, double lr, double beta1, double beta2,
                double eps, double c1, double c2) noexcept:
    """Adam's update of params with moments m and v (one per param, apart: _separate), c1
    and c2 the bias corrections."""
    cdef Py_ssize_t n = params.pk.n, i
    cdef double g
    cdef PyObject* p
    if params.pk.st != NULL:           # adopted weights: the contiguous arrays
        mg_adam(params.pk.st.data, params.pk.st.grad, m, v, n, lr, beta1, beta2, c1, c2, eps)
        return
    for i in range(n):
        p = params.pk.items[i]
        g = (<Val>p).pg[0]
        m[i] = beta1 * m[i] + (1.0 - beta1) * g
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
        (<Val>p).pd[0] = D(p) - lr * (m[i] * c1) / (sqrt(v[i] * c2) + eps)
        (<Val>p).pg[0] = 0.0


def portable_exp(double x):
    """e^x with the same bits on every CPU (the core's own exp; math.exp is the C library's,
    which can differ in the last bit from CPU to CPU)."""
    return mg_exp(x)


def portable_log(double x):
    """ln x (x > 0) with the same bits on every CPU, as portable_exp."""
    if not x > 0.0:
        raise ValueError(f"portable_log: {x} is not positive")
    return mg_log(x)


def portable_erfc(double x):
    """erfc x (1 - erf x) with the same bits on every CPU: math.erfc calls the C library's exp,
    which need not be the same from CPU to CPU. Within about 1e-13 of the true value."""
    return mg_erfc(x)


def total(xs):
    """The floats of xs added one after another from 0.0, left to right: what `sum` did before
    Python 3.12, whose sum() compensates the rounding of a float sum (Neumaier's method), so the
    same floats can sum to another last bit on 3.12 than on 3.11. Every sum that reaches a result
    (a loss, a score, a standing) is this one, so a run is the same on every Python."""
    cdef double s = 0.0
    for x in xs:
        s += x
    return s


def half_erfc_total(scores, double x, double scale):
    """total(0.5 * portable_erfc((s - x) / scale) for s in scores), in one call: the expected
    number of scores below x measured with a normal error (scale = its deviation times sqrt 2)."""
    cdef double s = 0.0
    for y in scores:
        s += 0.5 * mg_erfc((<double>y - x) / scale)
    return s


def powi(double x, long long n):
    """x ** n for a whole n >= 0 by repeated squaring: the same bits on every CPU (Python's
    float ** is the C library's pow)."""
    if n < 0:
        raise ValueError(f"powi: the power must be 0 or more, got {n}")
    return mg_powi(x, n)


def draw_index(logits, double temperature, double u):
    """The index `random.choices(range(n), weights)[0]` draws when its `random()` returns u, the
    weights being portable_exp((logit - max) / temperature): the same arithmetic in the same order (the
    weights summed left to right, then the first cumulative weight above u times the total), so
    the same draw, without a Python float per logit. logits: a Vec or a sequence of floats.
    ValueError, as random.choices raises, when the weights do not sum to a positive finite
    number (a NaN or infinite logit)."""
    cdef Py_ssize_t n, j
    cdef double* w
    n = (<Vec>logits).n if isinstance(logits, Vec) else len(logits)
    if n < 1:
        raise ValueError("draw_index: no logits to draw from")
    w = <double*>mg_mem_get(n * sizeof(double))
    if w == NULL:
        raise MemoryError()
    try:
        if isinstance(logits, Vec):
            memcpy(w, (<Vec>logits).d, n * sizeof(double))
        else:
            for j in range(n):
                w[j] = logits[j]               # TypeError for what is not a number
        return _draw(w, n, temperature, u)
    finally:
        mg_mem_put(w)


cdef Py_ssize_t _draw(double* w, Py_ssize_t n, double temperature, double u) except -1:
    """draw_index over the n logits in w (n >= 1), which become the cumulative weights."""
    cdef Py_ssize_t j, lo, hi, mid
    cdef double top = w[0], total = 0.0, x
    for j in range(1, n):
        if w[j] > top:
            top = w[j]
    for j in range(n):
        total += mg_exp((w[j] - top) / temperature)
        w[j] = total                           # the cumulative weights
    if not (total > 0.0 and total - total == 0.0):     # NaN or infinite
        raise ValueError("draw_index: the weights must sum to a positive finite number")
    x = u * total
    lo, hi = 0, n - 1                          # bisect_right(cumulative, x, 0, n - 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < w[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


# Decoder: the GPT's forward pass without a graph, for sampling and for a loss nobody
# differentiates. No nodes, no saved derivatives: plain arrays, a KV cache of plain arrays, and
# the weights read in place from their ValMatrix arrays (so it follows training as Adam updates
# them). Every op is the kernel the graph's op calls (mg_rmsnorm, mg_linear, mg_attend,
# mg_softmax), in the same order, so the logits are the graph's to the last bit.

cdef const double* _weights(object W, Py_ssize_t rows, Py_ssize_t cols, str name) except NULL:
    """The contiguous values of W, a rows x cols ValMatrix of weights."""
    if type(W) is not ValMatrix or (<ValMatrix>W).pk.st == NULL:
        raise TypeError(f"Decoder: {name} must be a ValMatrix of weights (leaves)")
    if (<ValMatrix>W).rows != rows or (<ValMatrix>W).cols != cols:
        raise ValueError(f"Decoder: {name} is {(<ValMatrix>W).rows} x {(<ValMatrix>W).cols}, "
                         f"expected {rows} x {cols}")
    return (<ValMatrix>W).pk.st.data


@cython.final
cdef class Decoder:
    """A GPT's forward pass without a graph: the same logits as the graph's, as plain numbers.

    wte (vocab x n_emb), wpe (n_ctx x n_emb), lm_head (vocab x n_emb): ValMatrix weights;
    layers: per layer (wq, wk, wv, wo, fc1, fc2), as `GPT.layers`. The weights are read where
    they live, so the Decoder sees every later update; it keeps its own KV cache.
    """
    cdef mg_gpt m
    cdef tuple mats                 # every matrix read, kept alive
    cdef double* buf                # the KV cache and the scratch vectors
    cdef Py_ssize_t filled          # positions in the KV cache

    def __init__(self, wte, wpe, layers, lm_head, Py_ssize_t n_head, double rms_eps=1e-5):
        cdef Py_ssize_t vocab, E, n_ctx, n_ff, l, i, n
        cdef double* d
        layers = [tuple(layer) for layer in layers]
        if type(wte) is not ValMatrix or type(wpe) is not ValMatrix:
            raise TypeError("Decoder: wte and wpe must be ValMatrix weights")
        vocab, E, n_ctx = (<ValMatrix>wte).rows, (<ValMatrix>wte).cols, (<ValMatrix>wpe).rows
        if n_head < 1 or E % n_head:
            raise ValueError(f"Decoder: n_emb ({E}) does not split into {n_head} heads")
        if any(len(layer) != MG_LAYER_WEIGHTS for layer in layers):
            raise ValueError("Decoder: each layer is (wq, wk, wv, wo, fc1, fc2)")
        n_ff = (<ValMatrix>layers[0][4]).rows if layers and type(layers[0][4]) is ValMatrix else 0
        self.mats = (wte, wpe, lm_head, layers)
        self.m.vocab, self.m.n_ctx, self.m.n_emb, self.m.n_head = vocab, n_ctx, E, n_head
        self.m.n_layer, self.m.n_ff, self.m.eps = len(layers), n_ff, rms_eps
        self.m.wte = _weights(wte, vocab, E, "wte")
        self.m.wpe = _weights(wpe, n_ctx, E, "wpe")
        self.m.lm_head = _weights(lm_head, vocab, E, "lm_head")
        self.m.layers = <const double**>malloc((MG_LAYER_WEIGHTS * len(layers) + 2 * n_ctx + 1)
                                                * sizeof(double*))
        if self.m.layers == NULL:
            raise MemoryError()
        self.m.kp = self.m.layers + MG_LAYER_WEIGHTS * len(layers)
        self.m.vp = self.m.kp + n_ctx
        for l in range(len(layers)):
            for i, (name, rows, cols) in enumerate((("wq", E, E), ("wk", E, E), ("wv", E, E),
                                                    ("wo", E, E), ("fc1", n_ff, E), ("fc2", E, n_ff))):
                self.m.layers[MG_LAYER_WEIGHTS * l + i] = _weights(layers[l][i], rows, cols,
                                                                   f"layers.{l}.{name}")
        # KV cache (2 n_layer n_ctx E), x xn q att tmp (5 E), hidden, attention weights
        # (n_head n_ctx), logits, and the scratch of a loss (vocab)
        n = 2 * len(layers) * n_ctx * E + 5 * E + n_ff + n_head * n_ctx + 2 * vocab
        self.buf = <double*>calloc(n, sizeof(double))
        if self.buf == NULL:
            raise MemoryError()
        d = self.buf
        self.m.keys = d
        self.m.values = d + len(layers) * n_ctx * E
        d += 2 * len(layers) * n_ctx * E
        self.m.x, self.m.xn, self.m.q, self.m.att, self.m.tmp = d, d + E, d + 2 * E, d + 3 * E, d + 4 * E
        d += 5 * E
        self.m.hidden = d
        self.m.a = d + n_ff
        self.m.logits = d + n_ff + n_head * n_ctx

    def __dealloc__(self):
        free(self.m.layers)
        free(self.buf)

    @property
    def n_ctx(self):
        return self.m.n_ctx

    cdef int _forward(self, Py_ssize_t token, Py_ssize_t pos) except -1:
        if not 0 <= token < self.m.vocab:
            raise IndexError(f"Decoder: token {token} outside the vocabulary of {self.m.vocab}")
        if not 0 <= pos <= self.filled or pos >= self.m.n_ctx:
            raise IndexError(f"Decoder: position {pos} with {self.filled} positions cached "
                             f"(n_ctx {self.m.n_ctx})")
        mg_gpt_forward(&self.m, token, pos)
        self.filled = pos + 1
        return 0

    def logits(self, Py_ssize_t token, Py_ssize_t pos):
        """The vocab logits (a constant Vec) after token at pos; positions 0 .. pos-1 must have
        been fed since (pos 0 starts a new sequence); the cache keeps pos."""
        cdef Vec out
        self._forward(token, pos)
        out = Vec.__new__(Vec)
        _vec_alloc(out, self.m.vocab, V_LEAF)
        memcpy(out.d, self.m.logits, self.m.vocab * sizeof(double))
        return out

    def sample(self, fed, double temperature, double cooling, random):
        """A name's tokens as `train._sample` draws them without top_k, its loop in C: feed fed
        (BOS, then a prefix's tokens); then at each position p draw a token with u = random()
        from the logits at temperature * cooling ** p (at least the smallest float), until BOS
        or n_ctx positions. A BOS drawn first is drawn again without BOS. Returns the prefix's
        tokens and the drawn ones, the same draws from the same random() calls as _sample's."""
        cdef list toks = list(fed), out
        cdef Py_ssize_t n_fed = len(toks), pos, bos, token, V = self.m.vocab
        cdef double t
        cdef double* w = self.m.logits + V              # scratch: the draw's weights
        if n_fed < 1:
            raise ValueError("Decoder.sample: fed needs at least BOS")
        bos = toks[0]
        token = bos
        out = toks[1:]
        for pos in range(self.m.n_ctx):
            self._forward(token, pos)
            if pos + 1 < n_fed:                         # still reading the prefix
                token = toks[pos + 1]
                continue
            t = temperature * mg_powi(cooling, pos)
            if DBL_MIN > t:                             # a temperature cooled below the
                t = DBL_MIN                             # smallest float is argmax all the same
            memcpy(w, self.m.logits, V * sizeof(double))
            token = _draw(w, V, t, random())
            if token == bos:
                if not out:                             # an empty name: draw a letter instead
                    memcpy(w, self.m.logits, V * sizeof(double))
                    w[bos] = -INFINITY
                    token = _draw(w, V, t, random())
                if token == bos:
                    break
            out.append(token)
        return out

    def loss(self, tokens):
        """GPT.loss(tokens).data computed without a graph: the mean next-token cross-entropy
        over tokens[:n_ctx], a float."""
        cdef list toks = list(tokens)[:self.m.n_ctx]
        cdef Py_ssize_t p, n = len(toks) - 1, target
        cdef double s = 0.0
        if n < 1:
            raise ValueError("Decoder.loss needs at least two tokens")
        for p in range(n):
            target = toks[p + 1]
            if not 0 <= target < self.m.vocab:
                raise IndexError(f"cross_entropy: target {target} outside {self.m.vocab} logits")
            self._forward(toks[p], p)
            s += mg_gpt_nll(&self.m, target, self.m.logits + self.m.vocab)
        return s * (1.0 / n)            # as vsum(losses, 1 / len(losses))


# Cython keeps each cdef class's method table in its type's dict as `__pyx_vtable__`, for other
# Cython modules that cimport the class. None does, and help() would list it: it goes.
cdef extern from "Python.h":
    ctypedef struct _TypeWithDict "PyTypeObject":
        PyObject* tp_dict
    void PyType_Modified(_TypeWithDict* t)

for _cls in (Val, ValMatrix, Decoder):
    if (<_TypeWithDict*>_cls).tp_dict != NULL:
        (<dict>(<_TypeWithDict*>_cls).tp_dict).pop("__pyx_vtable__", None)
        PyType_Modified(<_TypeWithDict*>_cls)
del _cls
