"""The atom: `Val`, a scalar that remembers how it was made, and the fused ops built from it.

Follows the seed's `Val` (data, grad, edges to parents with local derivatives) and micrograd's
engine, re-derived for speed:

- `data`/`grad` are C doubles; edges live in C (inline for one or two parents, shared arrays for
  fused ops), never in Python tuples.
- Fused n-ary ops (`vsum`, `dot`, `linear`, `softmax`, `rmsnorm`, `cross_entropy`) make one node
  with many parents instead of a chain of binary nodes.
- `backward` walks nodes in reverse creation order (a topological order, since a node is always
  made after its parents) with a binary heap; visited marks live in the node.
- Freeing a deep graph defers every release to an explicit stack, so it never recurses through
  the C stack.

Compiler directives are set in setup.py, in one place.
"""
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_ITEMS, PySequence_Fast_GET_SIZE
from libc.math cimport exp, log, pow, sqrt
from libc.stdlib cimport malloc, realloc, free
cimport cython

# Node kinds: how a node's parents and local derivatives are stored.
cdef enum:
    LEAF = 0       # no parents (an input or a parameter)
    EDGES = 1      # one or two parents, inline: (p0, d0), (p1, d1)
    WEIGHTED = 2   # n parents in a shared Pack, local derivatives in an owned array
    DOT = 3        # scale * sum_j a_j * b_j over two Packs; b absent means all-ones (a sum)


# A Pack is a reference-counted C array of Vals, shared by the many nodes of a fused op
# (every output of `linear` points into the same packed input and weight matrix).
cdef struct Pack:
    Py_ssize_t refcnt
    Py_ssize_t n
    PyObject** items


cdef unsigned long long _next_seq = 1   # creation counter: seq order is a topological order
cdef unsigned long long _epoch = 0      # one per backward pass: marks need no reset

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
        Py_DECREF(<object>o)
        return
    if _n_pending == _cap_pending:
        grown = <PyObject**>realloc(_pending, (2 * _cap_pending + 1024) * sizeof(PyObject*))
        if grown == NULL:               # out of memory: fall back to a plain release
            Py_DECREF(<object>o)
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
        Py_DECREF(<object>_pending[_n_pending])
    _draining = False


cdef Pack* _pack_new(Py_ssize_t n) except NULL:
    cdef Pack* pk = <Pack*>malloc(sizeof(Pack) + n * sizeof(PyObject*))
    if pk == NULL:
        raise MemoryError()
    pk.refcnt = 1
    pk.n = 0                            # filled in as items are stored
    pk.items = <PyObject**>(pk + 1)
    return pk


cdef void _pack_release(Pack* pk) noexcept:
    cdef Py_ssize_t i
    pk.refcnt -= 1
    if pk.refcnt == 0:
        for i in range(pk.n):
            _release(pk.items[i])
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
    cdef object v
    if expected >= 0 and n != expected:
        raise ValueError(f"expected {expected} Vals, got {n}")
    pk = _pack_new(n)
    try:
        for i in range(n):
            v = _as_val(<object>items[i])
            Py_INCREF(v)
            pk.items[i] = <PyObject*>v
            pk.n = i + 1
    except BaseException:
        _pack_release(pk)
        raise
    return pk


cdef Pack* _pack_rows(object rows, Py_ssize_t n_cols, Py_ssize_t* n_rows) except NULL:
    """Pack a sequence of equal-length rows of Vals, row-major."""
    cdef object fast = PySequence_Fast(rows, "expected a sequence of rows")
    cdef Py_ssize_t m = PySequence_Fast_GET_SIZE(fast), i, j, k = 0
    cdef PyObject** row_items = PySequence_Fast_ITEMS(fast)
    cdef object row
    cdef PyObject** items
    cdef Pack* pk
    cdef object v
    n_rows[0] = m
    pk = _pack_new(m * n_cols)
    try:
        for i in range(m):
            row = PySequence_Fast(<object>row_items[i], "expected each row to be a sequence")
            if PySequence_Fast_GET_SIZE(row) != n_cols:
                raise ValueError(f"row {i} has {PySequence_Fast_GET_SIZE(row)} Vals, expected {n_cols}")
            items = PySequence_Fast_ITEMS(row)
            for j in range(n_cols):
                v = _as_val(<object>items[j])
                Py_INCREF(v)
                pk.items[k] = <PyObject*>v
                k += 1
                pk.n = k
    except BaseException:
        _pack_release(pk)
        raise
    return pk


cdef inline Val _leaf(double data):
    cdef Val v = Val.__new__(Val)
    v.data = data
    return v


cdef inline Val _node(double data):
    """A fresh interior node; the caller sets its kind and parents."""
    global _next_seq
    cdef Val v = Val.__new__(Val)
    v.data = data
    v.seq = _next_seq
    _next_seq += 1
    return v


cdef inline Val _unary(double data, Val a, double da):
    cdef Val v = _node(data)
    v.kind = EDGES
    v.n = 1
    Py_INCREF(a)
    v.p0 = <PyObject*>a
    v.d0 = da
    return v


cdef inline Val _binary(double data, Val a, double da, Val b, double db):
    cdef Val v = _node(data)
    v.kind = EDGES
    v.n = 2
    Py_INCREF(a)
    Py_INCREF(b)
    v.p0 = <PyObject*>a
    v.d0 = da
    v.p1 = <PyObject*>b
    v.d1 = db
    return v


cdef inline bint _is_number(object o):
    return isinstance(o, (float, int))


@cython.final
@cython.freelist(4096)
cdef class Val:
    """A scalar with a gradient and the edges (parent, d self / d parent) that made it."""
    cdef public double data
    cdef public double grad
    cdef int kind
    cdef Py_ssize_t n                   # number of parents (EDGES, WEIGHTED) or terms (DOT)
    cdef unsigned long long seq         # creation order; 0 for leaves
    cdef unsigned long long mark        # the epoch of the last backward that reached this node
    cdef PyObject* p0                   # EDGES: inline parents and local derivatives
    cdef PyObject* p1
    cdef double d0
    cdef double d1
    cdef Pack* pa                       # WEIGHTED, DOT: parents pa[oa : oa + n]
    cdef Pack* pb                       # DOT: second factors pb[ob : ob + n], or NULL
    cdef Py_ssize_t oa
    cdef Py_ssize_t ob
    cdef double* ds                     # WEIGHTED: local derivatives
    cdef double scale                   # DOT: data = scale * sum_j a_j * b_j

    def __init__(self, data):
        self.data = data

    def __dealloc__(self):
        if self.kind == EDGES:
            _release(self.p0)
            if self.n == 2:
                _release(self.p1)
        elif self.kind == WEIGHTED:
            free(self.ds)
            _pack_release(self.pa)
        elif self.kind == DOT:
            _pack_release(self.pa)
            if self.pb != NULL:
                _pack_release(self.pb)

    def __repr__(self):
        return f"Val(data={self.data!r}, grad={self.grad!r})"

    def __float__(self):
        return self.data

    # Elementary ops. Each comment gives the local derivatives d out / d operand.
    # Cython 3 follows Python's binop rules, so reflected operators are written out.

    def __add__(self, other):           # d/da = 1, d/db = 1
        if type(other) is Val:
            return _binary(self.data + (<Val>other).data, self, 1.0, <Val>other, 1.0)
        if _is_number(other):
            return _unary(self.data + <double>other, self, 1.0)
        return NotImplemented

    def __radd__(self, other):
        if _is_number(other):
            return _unary(<double>other + self.data, self, 1.0)
        return NotImplemented

    def __sub__(self, other):           # d/da = 1, d/db = -1
        if type(other) is Val:
            return _binary(self.data - (<Val>other).data, self, 1.0, <Val>other, -1.0)
        if _is_number(other):
            return _unary(self.data - <double>other, self, 1.0)
        return NotImplemented

    def __rsub__(self, other):          # c - a: d/da = -1
        if _is_number(other):
            return _unary(<double>other - self.data, self, -1.0)
        return NotImplemented

    def __mul__(self, other):           # d/da = b, d/db = a
        if type(other) is Val:
            return _binary(self.data * (<Val>other).data, self, (<Val>other).data,
                           <Val>other, self.data)
        if _is_number(other):
            return _unary(self.data * <double>other, self, <double>other)
        return NotImplemented

    def __rmul__(self, other):
        if _is_number(other):
            return _unary(<double>other * self.data, self, <double>other)
        return NotImplemented

    def __truediv__(self, other):       # d/da = 1/b, d/db = -a/b^2
        cdef double b
        if type(other) is Val:
            b = (<Val>other).data
            return _binary(self.data / b, self, 1.0 / b, <Val>other, -self.data / (b * b))
        if _is_number(other):
            b = <double>other
            return _unary(self.data / b, self, 1.0 / b)
        return NotImplemented

    def __rtruediv__(self, other):      # c / a: d/da = -c/a^2
        cdef double c
        if _is_number(other):
            c = <double>other
            return _unary(c / self.data, self, -c / (self.data * self.data))
        return NotImplemented

    def __neg__(self):                  # d/da = -1
        return _unary(-self.data, self, -1.0)

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
        out = pow(c, self.data)
        return _unary(out, self, out * log(c))

    cpdef Val pow(self, double p):
        """self ** p, for a number p."""
        return _unary(pow(self.data, p), self, p * pow(self.data, p - 1.0))

    cpdef Val exp(self):                # d/da = e^a
        cdef double e = exp(self.data)
        return _unary(e, self, e)

    cpdef Val log(self):                # d/da = 1/a
        return _unary(log(self.data), self, 1.0 / self.data)

    cpdef Val relu(self):               # d/da = 1 if a > 0 else 0
        return _unary(self.data if self.data > 0.0 else 0.0, self,
                      1.0 if self.data > 0.0 else 0.0)

    def backward(self):
        """Set self.grad to 1 and add d self / d node into the grad of every node below it."""
        self.grad = 1.0
        _backward(self)


cdef inline void _heap_push(PyObject** heap, Py_ssize_t* size, PyObject* o) noexcept:
    """Push o on a max-heap keyed by seq (the newest node on top)."""
    cdef Py_ssize_t i = size[0], parent
    cdef unsigned long long s = (<Val>o).seq
    size[0] = i + 1
    while i > 0:
        parent = (i - 1) >> 1
        if (<Val>heap[parent]).seq >= s:
            break
        heap[i] = heap[parent]
        i = parent
    heap[i] = o


cdef inline PyObject* _heap_pop(PyObject** heap, Py_ssize_t* size) noexcept:
    cdef PyObject* top = heap[0]
    cdef Py_ssize_t n = size[0] - 1, i = 0, child
    cdef PyObject* last = heap[n]
    cdef unsigned long long s = (<Val>last).seq
    size[0] = n
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and (<Val>heap[child + 1]).seq > (<Val>heap[child]).seq:
            child += 1
        if (<Val>heap[child]).seq <= s:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = last
    return top


cdef int _backward(Val root) except -1:
    """Reverse-mode sweep from root, newest node first, each interior node exactly once."""
    global _epoch
    cdef Py_ssize_t cap = 1024, size = 0, j
    cdef PyObject** heap
    cdef PyObject** grown
    cdef PyObject* o
    cdef PyObject* a
    cdef PyObject* b
    cdef Val v, p
    cdef double g, gs
    if root.kind == LEAF:
        return 0
    _epoch += 1
    heap = <PyObject**>malloc(cap * sizeof(PyObject*))
    if heap == NULL:
        raise MemoryError()
    root.mark = _epoch
    _heap_push(heap, &size, <PyObject*>root)
    # Pushing a parent needs at most v.n (DOT: 2 v.n) free slots; grow before each node.
    while size > 0:
        v = <Val>_heap_pop(heap, &size)
        if size + 2 * v.n + 2 > cap:
            cap = 2 * (size + 2 * v.n + 2)
            grown = <PyObject**>realloc(heap, cap * sizeof(PyObject*))
            if grown == NULL:
                free(heap)
                raise MemoryError()
            heap = grown
        g = v.grad
        if v.kind == EDGES:
            p = <Val>v.p0
            p.grad += g * v.d0
            if p.kind != LEAF and p.mark != _epoch:
                p.mark = _epoch
                _heap_push(heap, &size, v.p0)
            if v.n == 2:
                p = <Val>v.p1
                p.grad += g * v.d1
                if p.kind != LEAF and p.mark != _epoch:
                    p.mark = _epoch
                    _heap_push(heap, &size, v.p1)
        elif v.kind == WEIGHTED:
            for j in range(v.n):
                a = v.pa.items[v.oa + j]
                p = <Val>a
                p.grad += g * v.ds[j]
                if p.kind != LEAF and p.mark != _epoch:
                    p.mark = _epoch
                    _heap_push(heap, &size, a)
        else:  # DOT: d/da_j = scale b_j, d/db_j = scale a_j (b_j = 1 for a plain sum)
            gs = g * v.scale
            for j in range(v.n):
                a = v.pa.items[v.oa + j]
                p = <Val>a
                if v.pb == NULL:
                    p.grad += gs
                else:
                    b = v.pb.items[v.ob + j]
                    p.grad += gs * (<Val>b).data
                    (<Val>b).grad += gs * p.data
                    if (<Val>b).kind != LEAF and (<Val>b).mark != _epoch:
                        (<Val>b).mark = _epoch
                        _heap_push(heap, &size, b)
                if p.kind != LEAF and p.mark != _epoch:
                    p.mark = _epoch
                    _heap_push(heap, &size, a)
    free(heap)
    return 0


# Fused ops: one node with many parents where the seed would build a chain of binary nodes.

cdef Val _dot_node(Pack* pa, Py_ssize_t oa, Pack* pb, Py_ssize_t ob, Py_ssize_t n, double scale):
    """scale * sum_j a_j * b_j over pa[oa:oa+n] and pb[ob:ob+n] (pb NULL: scale * sum_j a_j)."""
    cdef double s = 0.0
    cdef Py_ssize_t j
    cdef Val v
    if pb == NULL:
        for j in range(n):
            s += (<Val>pa.items[oa + j]).data
    else:
        for j in range(n):
            s += (<Val>pa.items[oa + j]).data * (<Val>pb.items[ob + j]).data
    v = _node(scale * s)
    v.kind = DOT
    v.n = n
    v.scale = scale
    v.pa = pa
    v.oa = oa
    pa.refcnt += 1
    v.pb = pb
    v.ob = ob
    if pb != NULL:
        pb.refcnt += 1
    return v


cdef Val _weighted(double data, Pack* pk, double* ds):
    """A node over all of pk with local derivatives ds (the node takes ownership of ds)."""
    cdef Val v = _node(data)
    v.kind = WEIGHTED
    v.n = pk.n
    v.pa = pk
    pk.refcnt += 1
    v.ds = ds
    return v


cdef double* _doubles(Py_ssize_t n) except NULL:
    cdef double* d = <double*>malloc((n if n > 0 else 1) * sizeof(double))
    if d == NULL:
        raise MemoryError()
    return d


def vsum(vals, double scale=1.0):
    """scale * sum(vals) as one Val with len(vals) parents (d/dx_j = scale)."""
    cdef Pack* pk = _pack_seq(vals, -1)
    try:
        return _dot_node(pk, 0, NULL, 0, pk.n, scale)
    finally:
        _pack_release(pk)


def dot(a, b, double scale=1.0):
    """scale * sum_j a[j] * b[j] as one Val (d/da_j = scale b_j, d/db_j = scale a_j)."""
    cdef Pack* pa = _pack_seq(a, -1)
    cdef Pack* pb = NULL
    try:
        pb = _pack_seq(b, pa.n)
        return _dot_node(pa, 0, pb, 0, pa.n, scale)
    finally:
        _pack_release(pa)
        if pb != NULL:
            _pack_release(pb)


@cython.final
cdef class ValMatrix:
    """A fixed rows x cols grid of Vals packed in C, so `linear` can reuse it without repacking."""
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

    def __len__(self):
        return self.rows

    def __getitem__(self, Py_ssize_t i):
        """Row i as a list of cols Vals."""
        if i < 0:
            i += self.rows
        if not 0 <= i < self.rows:
            raise IndexError("ValMatrix row out of range")
        return [<object>self.pk.items[i * self.cols + j] for j in range(self.cols)]

    def tolist(self):
        """The rows as lists of Vals."""
        return [self[i] for i in range(self.rows)]

    def values(self):
        """All rows * cols Vals, row-major."""
        return [<object>self.pk.items[k] for k in range(self.pk.n)]

    def __repr__(self):
        return f"ValMatrix(rows={self.rows}, cols={self.cols})"


def linear(x, W, double scale=1.0):
    """W·x as len(W) Vals: out_i = scale * sum_j W[i][j] * x[j], one node per output.

    W is a ValMatrix or a sequence of equal-length rows. Every output shares the packed x and W,
    so a layer costs one small node per output, not two nodes per multiply-add.
    """
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
            out[i] = _dot_node(pw, i * n, px, 0, n, scale)
        return out
    finally:
        _pack_release(px)
        if pw != NULL:
            _pack_release(pw)


cdef double _max_data(Pack* pk):
    cdef double m = (<Val>pk.items[0]).data
    cdef Py_ssize_t j
    for j in range(1, pk.n):
        if (<Val>pk.items[j]).data > m:
            m = (<Val>pk.items[j]).data
    return m


cdef double _log_sum_exp(Pack* pk, double* p):
    """log sum_j exp(x_j), writing softmax(x)_j into p; the max is subtracted so exp cannot overflow."""
    cdef double m = _max_data(pk), s = 0.0
    cdef Py_ssize_t j
    for j in range(pk.n):
        p[j] = exp((<Val>pk.items[j]).data - m)
        s += p[j]
    for j in range(pk.n):
        p[j] /= s
    return m + log(s)


def softmax(logits):
    """softmax(logits) as len(logits) Vals summing to 1.

    Built as y_i = exp(x_i - L) with L = logsumexp(x) one shared node (dL/dx_j = y_j),
    so y_i has two parents (dy_i/dx_i = y_i, dy_i/dL = -y_i): O(n) edges, not n^2.
    """
    cdef Pack* pk = _pack_seq(logits, -1)
    cdef Py_ssize_t n = pk.n, i
    cdef double* p = NULL
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


def cross_entropy(logits, Py_ssize_t target):
    """-log softmax(logits)[target] as one Val (d/dx_j = softmax_j - [j == target])."""
    cdef Pack* pk = _pack_seq(logits, -1)
    cdef double* p = NULL
    cdef double lse
    try:
        if not 0 <= target < pk.n:
            raise IndexError(f"cross_entropy: target {target} outside {pk.n} logits")
        p = _doubles(pk.n)
        lse = _log_sum_exp(pk, p)
        p[target] -= 1.0
        return _weighted(lse - (<Val>pk.items[target]).data, pk, p)
    finally:
        _pack_release(pk)


def rmsnorm(x, double eps=1e-5):
    """x * (mean(x^2) + eps)^-1/2 as len(x) Vals (no learned scale).

    The factor s is one shared node (ds/dx_j = -x_j s^3 / n); y_i = x_i * s has two parents.
    """
    cdef Pack* pk = _pack_seq(x, -1)
    cdef Py_ssize_t n = pk.n, j
    cdef double ms = 0.0, s, xj
    cdef double* ds = NULL
    cdef Val s_node
    cdef list out
    try:
        if n == 0:
            raise ValueError("rmsnorm of an empty list")
        for j in range(n):
            xj = (<Val>pk.items[j]).data
            ms += xj * xj
        ms /= n
        s = pow(ms + eps, -0.5)
        ds = _doubles(n)
        for j in range(n):
            ds[j] = -(<Val>pk.items[j]).data * s * s * s / n
        s_node = _weighted(s, pk, ds)
        out = [None] * n
        for j in range(n):
            xj = (<Val>pk.items[j]).data
            out[j] = _binary(xj * s, <Val>pk.items[j], s, s_node, xj)
        return out
    finally:
        _pack_release(pk)


def vadd(a, b):
    """[a_i + b_i]: the elementwise sum of two equal-length lists of Vals."""
    cdef Py_ssize_t n = len(a), i
    cdef Val x, y
    if len(b) != n:
        raise ValueError(f"vadd: lengths {n} and {len(b)} differ")
    out = [None] * n
    for i in range(n):
        x = _as_val(a[i])
        y = _as_val(b[i])
        out[i] = _binary(x.data + y.data, x, 1.0, y, 1.0)
    return out


def vrelu(x):
    """[relu(x_i)] for a list of Vals."""
    return [(<Val>_as_val(v)).relu() for v in x]


def adam_step(ValMatrix params, double[::1] m, double[::1] v, double lr,
              double beta1, double beta2, double eps, Py_ssize_t t):
    """Apply one bias-corrected Adam step (t counts from 1) to every param, then zero its grad.

    m and v are the first and second moment buffers, one float64 per param, updated in place.
    """
    cdef Py_ssize_t n = params.pk.n, i
    cdef double c1, c2, g
    cdef Val p
    if m.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"adam_step: {n} params but moments of length {m.shape[0]}, {v.shape[0]}")
    if t < 1:
        raise ValueError("adam_step: t counts from 1")
    c1 = 1.0 - pow(beta1, <double>t)
    c2 = 1.0 - pow(beta2, <double>t)
    for i in range(n):
        p = <Val>params.pk.items[i]
        g = p.grad
        m[i] = beta1 * m[i] + (1.0 - beta1) * g
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
        p.data -= lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps)
        p.grad = 0.0
