/*
 * Compiled core of the Kootabase matching engine.
 *
 * A line-for-line port of matching/engine/book.py (PyOrderBook), which stays
 * the reference: both must return equal events for every command, and the
 * test suite checks that on random command streams.  Read book.py first; the
 * comments here only cover what is specific to C.
 *
 * Layout
 *   - Order: fixed-size struct from a pooled allocator, linked in its level.
 *   - Level: FIFO of orders plus a 128-bit aggregate (no overflow whatever
 *     the number of orders at a price).
 *   - Side: two parallel arrays sorted by key (price for bids, -price for
 *     asks), best level last, so the best level is popped in O(1) and new
 *     levels near the top move only a few entries.
 *   - Order ids -> Order*: open addressing, linear probing, backward-shift
 *     deletion (no tombstones).
 *   - Stops: array in acceptance order plus an id map; they are rare.
 *
 * All memory comes from PyMem_* so tracemalloc accounts for it.
 * The core holds no Python objects; events are built as instances of the
 * NamedTuple classes handed over by configure().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef long long i64;
typedef __int128 i128;

enum { BUY = 1, SELL = 2 };
enum { GTC = 1, IOC = 2, FOK = 3 };
enum { STP_CANCEL_MAKER = 1, STP_CANCEL_TAKER = 2, STP_CANCEL_BOTH = 3 };
enum { TRIGGER_ABOVE = 1, TRIGGER_BELOW = 2 };
enum {
    R_SEQ = 1, R_SIDE = 2, R_PRICE = 3, R_QTY = 4, R_TIF = 5, R_STP = 6, R_TRIGGER = 7,
    R_DUP = 8, R_UNKNOWN = 9, R_NOT_AMENDABLE = 10, R_POST_ONLY = 11, R_STOP_TRIGGER = 12,
    R_USER = 20, R_SELF = 21, R_IOC = 22, R_FOK = 23
};
enum {
    K_ACCEPTED = 1, K_REJECTED = 2, K_TRADE = 3, K_PARTIALLY_FILLED = 4, K_FILLED = 5,
    K_CANCELLED = 6, K_EXPIRED = 7, K_TRIGGERED = 8, K_AMENDED = 9, K_LEVEL = 10
};
enum { WHY_NONE = 0, WHY_SIZE = 1, WHY_BUDGET = 2, WHY_SELF = 3 };

#define I64_MAX_ ((i64)0x7fffffffffffffffLL)

/* ------------------------------------------------------------ types given by Python */

static PyTypeObject *C_PlaceLimit, *C_PlaceMarket, *C_PlaceStop, *C_Cancel, *C_Amend;
static PyTypeObject *E_types[11]; /* indexed by event kind */

/* ------------------------------------------------------------ structures */

typedef struct Level Level;
typedef struct Order {
    i64 id, owner, price, remaining, filled;
    struct Order *prev, *next;
    Level *level;
    unsigned char side, post_only, stp;
} Order;

struct Level {
    i128 total;
    i64 price;
    Order *head, *tail;
    PyObject *price_obj; /* cached int for Level/Trade events, created on first use */
};

typedef struct {
    i64 *keys;
    Level **levels;
    Py_ssize_t n, cap;
} Side;

typedef struct {
    i64 id, owner, side, trigger, stop_price, qty, quote, limit_price, tif, protection, stp;
} Stop;

typedef struct {
    i64 id;
    void *ptr;
} Slot;

typedef struct {
    Slot *slots;
    size_t mask, count;
} IdMap;

#define ORDER_BLOCK 4096
typedef struct Block {
    struct Block *next;
    Order orders[ORDER_BLOCK];
} Block;

typedef struct {
    PyObject_HEAD
    i64 last_seq, last_price;
    Side bids, asks;
    IdMap orders, stop_ids;
    Stop **stops;
    Py_ssize_t n_stops, cap_stops;
    Order *free_orders;
    Block *blocks;
    Level **free_levels;
    Py_ssize_t n_free_levels, cap_free_levels;
    PyObject **ev_items; /* reused event buffer */
    Py_ssize_t ev_cap;
    int busy;
} Book;

/* ------------------------------------------------------------ id map */

static inline size_t hash_id(i64 id) {
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ULL;
    return (size_t)(x ^ (x >> 29));
}

static int map_init(IdMap *m, size_t cap) {
    m->slots = PyMem_Calloc(cap, sizeof(Slot));
    if (!m->slots) { PyErr_NoMemory(); return -1; }
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

static inline void *map_get(const IdMap *m, i64 id) {
    size_t i = hash_id(id) & m->mask;
    for (;;) {
        Slot *s = &m->slots[i];
        if (!s->ptr) return NULL;
        if (s->id == id) return s->ptr;
        i = (i + 1) & m->mask;
    }
}

static int map_grow(IdMap *m) {
    size_t old_cap = m->mask + 1, new_cap = old_cap * 2;
    Slot *old = m->slots;
    Slot *slots = PyMem_Calloc(new_cap, sizeof(Slot));
    if (!slots) { PyErr_NoMemory(); return -1; }
    for (size_t j = 0; j < old_cap; j++) {
        if (!old[j].ptr) continue;
        size_t i = hash_id(old[j].id) & (new_cap - 1);
        while (slots[i].ptr) i = (i + 1) & (new_cap - 1);
        slots[i] = old[j];
    }
    PyMem_Free(old);
    m->slots = slots;
    m->mask = new_cap - 1;
    return 0;
}

/* id must be absent */
static inline int map_put(IdMap *m, i64 id, void *ptr) {
    if ((m->count + 1) * 4 > (m->mask + 1) * 3 && map_grow(m) < 0) return -1;
    size_t i = hash_id(id) & m->mask;
    while (m->slots[i].ptr) i = (i + 1) & m->mask;
    m->slots[i].id = id;
    m->slots[i].ptr = ptr;
    m->count++;
    return 0;
}

static inline void map_del(IdMap *m, i64 id) {
    size_t mask = m->mask, i = hash_id(id) & mask;
    while (m->slots[i].id != id || !m->slots[i].ptr) {
        if (!m->slots[i].ptr) return;
        i = (i + 1) & mask;
    }
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].ptr) break;
        size_t k = hash_id(m->slots[j].id) & mask;
        /* move slot j to the hole i unless its home k lies cyclically in (i, j] */
        int in_range = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!in_range) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].ptr = NULL;
    m->slots[i].id = 0;
    m->count--;
}

/* ------------------------------------------------------------ allocation */

static Order *order_alloc(Book *b) {
    if (!b->free_orders) {
        Block *blk = PyMem_Malloc(sizeof(Block));
        if (!blk) { PyErr_NoMemory(); return NULL; }
        blk->next = b->blocks;
        b->blocks = blk;
        for (int i = ORDER_BLOCK - 1; i >= 0; i--) {
            blk->orders[i].next = b->free_orders;
            b->free_orders = &blk->orders[i];
        }
    }
    Order *o = b->free_orders;
    b->free_orders = o->next;
    return o;
}

static inline void order_free(Book *b, Order *o) {
    o->next = b->free_orders;
    b->free_orders = o;
}

static Level *level_alloc(Book *b, i64 price) {
    Level *l;
    if (b->n_free_levels) {
        l = b->free_levels[--b->n_free_levels];
    } else {
        l = PyMem_Malloc(sizeof(Level));
        if (!l) { PyErr_NoMemory(); return NULL; }
    }
    l->total = 0;
    l->price = price;
    l->head = l->tail = NULL;
    l->price_obj = NULL;
    return l;
}

static void level_free(Book *b, Level *l) {
    Py_CLEAR(l->price_obj);
    if (b->n_free_levels == b->cap_free_levels) {
        Py_ssize_t cap = b->cap_free_levels ? b->cap_free_levels * 2 : 64;
        Level **arr = PyMem_Realloc(b->free_levels, cap * sizeof(Level *));
        if (!arr) { PyMem_Free(l); return; }
        b->free_levels = arr;
        b->cap_free_levels = cap;
    }
    b->free_levels[b->n_free_levels++] = l;
}

/* ------------------------------------------------------------ sides */

static inline i64 side_key(int side, i64 price) { return side == BUY ? price : -price; }

/* first index whose key >= key (branchless lower bound) */
static inline Py_ssize_t side_search(const Side *s, i64 key) {
    Py_ssize_t n = s->n;
    /* activity clusters near the best level (the end): check it first */
    if (!n || s->keys[n - 1] < key) return n;
    const i64 *base = s->keys;
    while (n > 1) {
        Py_ssize_t half = n >> 1;
        base += (base[half] < key) ? half : 0;
        n -= half;
    }
    return (base - s->keys) + (*base < key);
}

static Level *side_get_or_add(Book *b, Side *s, int side, i64 price) {
    i64 key = side_key(side, price);
    Py_ssize_t i = side_search(s, key);
    if (i < s->n && s->keys[i] == key) return s->levels[i];
    if (s->n == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 256;
        i64 *keys = PyMem_Realloc(s->keys, cap * sizeof(i64));
        if (!keys) { PyErr_NoMemory(); return NULL; }
        s->keys = keys;
        Level **levels = PyMem_Realloc(s->levels, cap * sizeof(Level *));
        if (!levels) { PyErr_NoMemory(); return NULL; }
        s->levels = levels;
        s->cap = cap;
    }
    Level *l = level_alloc(b, price);
    if (!l) return NULL;
    memmove(&s->keys[i + 1], &s->keys[i], (s->n - i) * sizeof(i64));
    memmove(&s->levels[i + 1], &s->levels[i], (s->n - i) * sizeof(Level *));
    s->keys[i] = key;
    s->levels[i] = l;
    s->n++;
    return l;
}

static void side_drop(Book *b, Side *s, int side, Level *l) {
    i64 key = side_key(side, l->price);
    Py_ssize_t i = side_search(s, key);
    memmove(&s->keys[i], &s->keys[i + 1], (s->n - i - 1) * sizeof(i64));
    memmove(&s->levels[i], &s->levels[i + 1], (s->n - i - 1) * sizeof(Level *));
    s->n--;
    level_free(b, l);
}

static inline void link_order(Order *o, Level *l) {
    o->level = l;
    o->next = NULL;
    o->prev = l->tail;
    if (l->tail) l->tail->next = o; else l->head = o;
    l->tail = o;
}

static inline void unlink_order(Order *o, Level *l) {
    if (o->prev) o->prev->next = o->next; else l->head = o->next;
    if (o->next) o->next->prev = o->prev; else l->tail = o->prev;
    o->prev = o->next = NULL;
}

/* ------------------------------------------------------------ events */

/* Events of the command being applied; turned into a list at the end. */
typedef struct {
    PyObject **items;
    Py_ssize_t n, cap;
} EvBuf;

/* append a new reference (stolen); NULL means an error is already set */
static inline int push(EvBuf *ev, PyObject *t) {
    if (!t) return -1;
    if (ev->n == ev->cap) {
        Py_ssize_t cap = ev->cap * 2;
        PyObject **items = PyMem_Realloc(ev->items, cap * sizeof(PyObject *));
        if (!items) { Py_DECREF(t); PyErr_NoMemory(); return -1; }
        ev->items = items;
        ev->cap = cap;
    }
    ev->items[ev->n++] = t;
    return 0;
}

static inline int list_push(PyObject *list, PyObject *t) {
    if (!t) return -1;
    int r = PyList_Append(list, t);
    Py_DECREF(t);
    return r;
}

static PyObject *make_event(int kind, int n, const i64 *v) {
    PyTypeObject *tp = E_types[kind];
    PyObject *t = tp->tp_alloc(tp, n + 1);
    if (!t) return NULL;
    PyObject *k = PyLong_FromLong(kind);
    PyTuple_SET_ITEM(t, 0, k);
    for (int i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (!x) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i + 1, x);
    }
    return t;
}

#define EMIT(KIND, ...)                                                           \
    do {                                                                          \
        const i64 v_[] = {__VA_ARGS__};                                           \
        if (push(ev, make_event(KIND, (int)(sizeof(v_) / sizeof(v_[0])), v_)) < 0) \
            return -1;                                                            \
    } while (0)

static PyObject *int128_to_py(i128 v) {
    if (v >= -(i128)I64_MAX_ && v <= (i128)I64_MAX_) return PyLong_FromLongLong((i64)v);
    unsigned char bytes[16];
    for (int i = 0; i < 16; i++) bytes[i] = (unsigned char)(((unsigned __int128)v) >> (8 * i));
    return _PyLong_FromByteArray(bytes, 16, 1, 1);
}

/* an event from new references (stolen, NULL means an error already set) */
static PyObject *event_from(int kind, int n, PyObject **items) {
    PyTypeObject *tp = E_types[kind];
    PyObject *t = NULL;
    for (int i = 0; i < n; i++)
        if (!items[i]) goto fail;
    t = tp->tp_alloc(tp, n + 1);
    if (!t) goto fail;
    PyTuple_SET_ITEM(t, 0, PyLong_FromLong(kind)); /* small int: cannot fail */
    for (int i = 0; i < n; i++) PyTuple_SET_ITEM(t, i + 1, items[i]);
    return t;
fail:
    for (int i = 0; i < n; i++) Py_XDECREF(items[i]);
    return NULL;
}

#define EMIT_OBJ(KIND, ...)                                                                 \
    do {                                                                                    \
        PyObject *o_[] = {__VA_ARGS__};                                                     \
        if (push(ev, event_from(KIND, (int)(sizeof(o_) / sizeof(o_[0])), o_)) < 0) return -1; \
    } while (0)

/* a new reference to `o`, or a new int for `v` when `o` is NULL */
static inline PyObject *OI(PyObject *o, i64 v) {
    if (o) {
        Py_INCREF(o);
        return o;
    }
    return PyLong_FromLongLong(v);
}
#define INT(v) PyLong_FromLongLong(v)

static inline PyObject *level_price(Level *l) {
    if (!l->price_obj && !(l->price_obj = PyLong_FromLongLong(l->price))) return NULL;
    Py_INCREF(l->price_obj);
    return l->price_obj;
}

static int emit_level(EvBuf *ev, int side, Level *l) {
    PyObject *items[] = {PyLong_FromLong(side), level_price(l), int128_to_py(l->total)};
    return push(ev, event_from(K_LEVEL, 3, items));
}

#define EMIT_LEVEL(side, l) \
    do { if (emit_level(ev, (side), (l)) < 0) return -1; } while (0)

/* ------------------------------------------------------------ book structure */

static Level *rest(Book *b, Order *o) {
    Side *s = o->side == BUY ? &b->bids : &b->asks;
    Level *l = side_get_or_add(b, s, o->side, o->price);
    if (!l) return NULL;
    if (map_put(&b->orders, o->id, o) < 0) return NULL;
    link_order(o, l);
    l->total += o->remaining;
    return l;
}

/* take a resting order out, emit its level's new total, drop the level if emptied */
static int remove_order(Book *b, EvBuf *ev, Order *o) {
    Level *l = o->level;
    unlink_order(o, l);
    l->total -= o->remaining;
    map_del(&b->orders, o->id);
    int rc = emit_level(ev, o->side, l);
    if (!l->head) side_drop(b, o->side == BUY ? &b->bids : &b->asks, o->side, l);
    return rc;
}

static int crosses(Book *b, int side, i64 price) {
    if (side == BUY) return b->asks.n && b->asks.levels[b->asks.n - 1]->price <= price;
    return b->bids.n && b->bids.levels[b->bids.n - 1]->price >= price;
}

static int fok_fillable(Book *b, int side, i64 limit, i64 qty, i64 owner, int stp) {
    Side *opp = side == BUY ? &b->asks : &b->bids;
    i64 need = qty;
    for (Py_ssize_t i = opp->n - 1; i >= 0; i--) {
        Level *l = opp->levels[i];
        i64 p = l->price;
        if (side == BUY ? p > limit : p < limit) return 0;
        for (Order *o = l->head; o; o = o->next) {
            if (o->owner == owner) {
                if (stp != STP_CANCEL_MAKER) return 0;
            } else {
                need -= o->remaining;
                if (need <= 0) return 1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ matching */

static int take(Book *b, EvBuf *ev, i64 oid, i64 owner, PyObject *oid_o, PyObject *owner_o, int side, i64 limit,
                i64 *rem_io, i64 *quote_io, int by_quote, int stp, i64 *traded_out, int *why_out) {
    Side *opp = side == BUY ? &b->asks : &b->bids;
    int opp_side = side == BUY ? SELL : BUY;
    i64 rem = *rem_io, quote = *quote_io, traded = 0;
    int why = WHY_NONE;
    int err = 0;
    while (opp->n > 0) {
        Level *l = opp->levels[opp->n - 1];
        i64 p = l->price;
        if (limit && (side == BUY ? p > limit : p < limit)) break;
        Order *o = l->head;
        int touched = 0;
        while (o) {
            Order *nxt = o->next;
            if (o->owner == owner) {
                if (stp == STP_CANCEL_TAKER) { why = WHY_SELF; break; }
                unlink_order(o, l);
                l->total -= o->remaining;
                map_del(&b->orders, o->id);
                touched = 1;
                const i64 v[] = {o->id, o->owner, o->filled, o->remaining, 0, R_SELF};
                order_free(b, o);
                if (push(ev, make_event(K_CANCELLED, 6, v)) < 0) { err = 1; break; }
                if (stp == STP_CANCEL_BOTH) { why = WHY_SELF; break; }
                o = nxt;
                continue;
            }
            i64 q = o->remaining;
            if (rem < q) q = rem;
            if (by_quote) {
                i64 affordable = quote / p;
                if (affordable == 0) { why = WHY_BUDGET; break; }
                if (affordable < q) q = affordable;
                quote -= q * p;
            }
            touched = 1;
            rem -= q;
            traded += q;
            l->total -= q;
            o->filled += q;
            o->remaining -= q;
            {
                PyObject *items[] = {INT(o->id), INT(o->owner), OI(oid_o, oid), OI(owner_o, owner),
                                     PyLong_FromLong(side), level_price(l), INT(q)};
                if (push(ev, event_from(K_TRADE, 7, items)) < 0) { err = 1; break; }
            }
            if (o->remaining) {
                const i64 v[] = {o->id, o->owner, o->filled, o->remaining, 0, 0};
                if (push(ev, make_event(K_PARTIALLY_FILLED, 6, v)) < 0) { err = 1; break; }
            } else {
                unlink_order(o, l);
                map_del(&b->orders, o->id);
                const i64 v[] = {o->id, o->owner, o->filled, 0, 0, 0};
                order_free(b, o);
                if (push(ev, make_event(K_FILLED, 6, v)) < 0) { err = 1; break; }
            }
            b->last_price = p;
            if (rem == 0) { why = WHY_SIZE; break; }
            if (by_quote && quote == 0) { why = WHY_BUDGET; break; }
            o = nxt;
        }
        if (err) return -1;
        if (touched && emit_level(ev, opp_side, l) < 0) return -1;
        if (!l->head) {
            opp->n--;
            level_free(b, l);
        }
        if (why) break;
    }
    *rem_io = rem;
    *quote_io = quote;
    *traded_out = traded;
    *why_out = why;
    return 0;
}

/* oid_o, owner_o, price_o: the command's int objects for those values, or NULL */
static int execute(Book *b, EvBuf *ev, i64 oid, i64 owner, PyObject *oid_o, PyObject *owner_o, PyObject *price_o,
                   int side, i64 limit, i64 qty, int capped, i64 quote, int by_quote, int tif, int post_only, int stp,
                   i64 filled) {
    if (tif == FOK && !fok_fillable(b, side, limit, qty, owner, stp)) {
        EMIT_OBJ(K_EXPIRED, OI(oid_o, oid), OI(owner_o, owner), INT(filled), INT(qty), INT(0), INT(R_FOK));
        return 0;
    }
    i64 rem = qty, traded;
    int why;
    if (take(b, ev, oid, owner, oid_o, owner_o, side, limit, &rem, &quote, by_quote, stp, &traded, &why) < 0)
        return -1;
    filled += traded;
    i64 shown = capped ? rem : 0;
    if (why == WHY_SELF) {
        EMIT_OBJ(K_CANCELLED, OI(oid_o, oid), OI(owner_o, owner), INT(filled), INT(shown), INT(quote), INT(R_SELF));
    } else if (rem == 0 || (why == WHY_BUDGET && traded)) {
        EMIT_OBJ(K_FILLED, OI(oid_o, oid), OI(owner_o, owner), INT(filled), INT(shown), INT(quote), INT(0));
    } else if (tif == GTC) {
        if (traded)
            EMIT_OBJ(K_PARTIALLY_FILLED, OI(oid_o, oid), OI(owner_o, owner), INT(filled), INT(rem), INT(0), INT(0));
        Order *o = order_alloc(b);
        if (!o) return -1;
        o->id = oid;
        o->owner = owner;
        o->side = (unsigned char)side;
        o->price = limit;
        o->remaining = rem;
        o->filled = filled;
        o->post_only = (unsigned char)post_only;
        o->stp = (unsigned char)stp;
        Level *l = rest(b, o);
        if (!l) { order_free(b, o); return -1; }
        if (price_o && !l->price_obj) {
            Py_INCREF(price_o);
            l->price_obj = price_o;
        }
        EMIT_LEVEL(side, l);
    } else {
        EMIT_OBJ(K_EXPIRED, OI(oid_o, oid), OI(owner_o, owner), INT(filled), INT(shown), INT(quote), INT(R_IOC));
    }
    return 0;
}

static int execute_market(Book *b, EvBuf *ev, i64 oid, i64 owner, PyObject *oid_o, PyObject *owner_o, int side,
                          i64 qty, i64 quote, i64 protection, int stp) {
    return execute(b, ev, oid, owner, oid_o, owner_o, NULL, side, protection, qty ? qty : I64_MAX_, qty != 0, quote,
                   quote > 0, IOC, 0, stp, 0);
}

static void stop_remove_at(Book *b, Py_ssize_t i) {
    memmove(&b->stops[i], &b->stops[i + 1], (b->n_stops - i - 1) * sizeof(Stop *));
    b->n_stops--;
}

static int fire_stops(Book *b, EvBuf *ev) {
    while (b->n_stops) {
        i64 last = b->last_price;
        Py_ssize_t n = 0;
        Stop **batch = PyMem_Malloc(b->n_stops * sizeof(Stop *));
        if (!batch) { PyErr_NoMemory(); return -1; }
        Py_ssize_t keep = 0;
        for (Py_ssize_t i = 0; i < b->n_stops; i++) {
            Stop *s = b->stops[i];
            int fires = s->trigger == TRIGGER_ABOVE ? last >= s->stop_price : last <= s->stop_price;
            if (fires) {
                batch[n++] = s;
                map_del(&b->stop_ids, s->id);
            } else {
                b->stops[keep++] = s;
            }
        }
        b->n_stops = keep;
        if (!n) { PyMem_Free(batch); return 0; }
        int rc = 0;
        Py_ssize_t i = 0;
        for (; i < n && rc == 0; i++) {
            Stop *s = batch[i];
            const i64 v[] = {s->id, s->owner, s->side, last};
            rc = push(ev, make_event(K_TRIGGERED, 4, v));
            if (rc == 0) {
                if (s->limit_price)
                    rc = execute(b, ev, s->id, s->owner, NULL, NULL, NULL, (int)s->side, s->limit_price, s->qty, 1, 0, 0,
                                 (int)s->tif, 0, (int)s->stp, 0);
                else
                    rc = execute_market(b, ev, s->id, s->owner, NULL, NULL, (int)s->side, s->qty, s->quote,
                                        s->protection, (int)s->stp);
            }
            PyMem_Free(s);
        }
        for (; i < n; i++) PyMem_Free(batch[i]);
        PyMem_Free(batch);
        if (rc < 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ commands */

static int read_fields(PyObject *cmd, i64 *out, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(cmd, i);
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "command fields must be ints, got %R in %R", item, cmd);
            return -1;
        }
        int overflow;
        i64 v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (overflow || v < 0) {
            PyErr_Format(PyExc_ValueError, "command field %R out of range 0..2**63-1 in %R", item, cmd);
            return -1;
        }
        out[i] = v;
    }
    return 0;
}

static inline int is_live(Book *b, i64 id) { return map_get(&b->orders, id) || map_get(&b->stop_ids, id); }
static inline int valid_stp(i64 s) { return s >= STP_CANCEL_MAKER && s <= STP_CANCEL_BOTH; }
static inline int valid_tif(i64 t) { return t >= GTC && t <= FOK; }

static int cmd_limit(Book *b, EvBuf *ev, const i64 *f, PyObject *const *o) {
    i64 oid = f[1], owner = f[2], side = f[3], price = f[4], qty = f[5], tif = f[6], post_only = f[7], stp = f[8];
    int reason = 0;
    if (side != BUY && side != SELL) reason = R_SIDE;
    else if (price < 1) reason = R_PRICE;
    else if (qty < 1) reason = R_QTY;
    else if (!valid_tif(tif) || (post_only && tif != GTC)) reason = R_TIF;
    else if (!valid_stp(stp)) reason = R_STP;
    else if (is_live(b, oid)) reason = R_DUP;
    else if (post_only && crosses(b, (int)side, price)) reason = R_POST_ONLY;
    if (reason) { EMIT_OBJ(K_REJECTED, OI(o[1], 0), INT(reason)); return 0; }
    EMIT_OBJ(K_ACCEPTED, OI(o[1], 0), OI(o[2], 0), OI(o[3], 0));
    i64 before = b->last_price;
    if (execute(b, ev, oid, owner, o[1], o[2], o[4], (int)side, price, qty, 1, 0, 0, (int)tif, post_only != 0,
                (int)stp, 0) < 0)
        return -1;
    if (b->last_price != before && b->n_stops) return fire_stops(b, ev);
    return 0;
}

static int cmd_market(Book *b, EvBuf *ev, const i64 *f, PyObject *const *o) {
    i64 oid = f[1], owner = f[2], side = f[3], qty = f[4], quote = f[5], protection = f[6], stp = f[7];
    int reason = 0;
    if (side != BUY && side != SELL) reason = R_SIDE;
    else if (qty == 0 && quote == 0) reason = R_QTY;
    else if (!valid_stp(stp)) reason = R_STP;
    else if (is_live(b, oid)) reason = R_DUP;
    if (reason) { EMIT_OBJ(K_REJECTED, OI(o[1], 0), INT(reason)); return 0; }
    EMIT_OBJ(K_ACCEPTED, OI(o[1], 0), OI(o[2], 0), OI(o[3], 0));
    i64 before = b->last_price;
    if (execute_market(b, ev, oid, owner, o[1], o[2], (int)side, qty, quote, protection, (int)stp) < 0) return -1;
    if (b->last_price != before && b->n_stops) return fire_stops(b, ev);
    return 0;
}

static int add_stop(Book *b, const Stop *src) {
    if (b->n_stops == b->cap_stops) {
        Py_ssize_t cap = b->cap_stops ? b->cap_stops * 2 : 16;
        Stop **arr = PyMem_Realloc(b->stops, cap * sizeof(Stop *));
        if (!arr) { PyErr_NoMemory(); return -1; }
        b->stops = arr;
        b->cap_stops = cap;
    }
    Stop *s = PyMem_Malloc(sizeof(Stop));
    if (!s) { PyErr_NoMemory(); return -1; }
    *s = *src;
    if (map_put(&b->stop_ids, s->id, s) < 0) { PyMem_Free(s); return -1; }
    b->stops[b->n_stops++] = s;
    return 0;
}

static int cmd_stop(Book *b, EvBuf *ev, const i64 *f, PyObject *const *o) {
    Stop s = {f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]};
    int reason = 0;
    i64 last = b->last_price;
    if (s.side != BUY && s.side != SELL) reason = R_SIDE;
    else if (s.trigger != TRIGGER_ABOVE && s.trigger != TRIGGER_BELOW) reason = R_TRIGGER;
    else if (s.stop_price < 1 || (s.limit_price && s.protection)) reason = R_PRICE;
    else if ((s.qty == 0 && s.quote == 0) || (s.limit_price && (s.qty == 0 || s.quote))) reason = R_QTY;
    else if (!valid_tif(s.tif)) reason = R_TIF;
    else if (!valid_stp(s.stp)) reason = R_STP;
    else if (is_live(b, s.id)) reason = R_DUP;
    else if (last && (s.trigger == TRIGGER_ABOVE ? last >= s.stop_price : last <= s.stop_price))
        reason = R_STOP_TRIGGER;
    if (reason) { EMIT_OBJ(K_REJECTED, OI(o[1], 0), INT(reason)); return 0; }
    EMIT_OBJ(K_ACCEPTED, OI(o[1], 0), OI(o[2], 0), OI(o[3], 0));
    return add_stop(b, &s);
}

static int cmd_cancel(Book *b, EvBuf *ev, const i64 *f, PyObject *const *o) {
    i64 oid = f[1];
    Order *r = map_get(&b->orders, oid);
    if (r) {
        PyObject *items[] = {OI(o[1], 0), INT(r->owner), INT(r->filled), INT(r->remaining), INT(0), INT(R_USER)};
        if (push(ev, event_from(K_CANCELLED, 6, items)) < 0) return -1;
        int rc = remove_order(b, ev, r);
        order_free(b, r);
        return rc;
    }
    Stop *s = map_get(&b->stop_ids, oid);
    if (s) {
        map_del(&b->stop_ids, oid);
        for (Py_ssize_t i = 0; i < b->n_stops; i++) {
            if (b->stops[i] == s) { stop_remove_at(b, i); break; }
        }
        PyObject *items[] = {OI(o[1], 0), INT(s->owner), INT(0), INT(s->qty), INT(s->quote), INT(R_USER)};
        PyMem_Free(s);
        return push(ev, event_from(K_CANCELLED, 6, items));
    }
    EMIT_OBJ(K_REJECTED, OI(o[1], 0), INT(R_UNKNOWN));
    return 0;
}

static int cmd_amend(Book *b, EvBuf *ev, const i64 *f, PyObject *const *o) {
    i64 oid = f[1], price = f[2], qty = f[3];
    Order *r = map_get(&b->orders, oid);
    int reason = 0;
    if (!r) reason = map_get(&b->stop_ids, oid) ? R_NOT_AMENDABLE : R_UNKNOWN;
    else if (price < 1) reason = R_PRICE;
    else if (qty <= r->filled) reason = R_QTY;
    else if (r->post_only && price != r->price && crosses(b, r->side, price)) reason = R_POST_ONLY;
    if (reason) { EMIT_OBJ(K_REJECTED, OI(o[1], 0), INT(reason)); return 0; }
    Level *l = r->level;
    i64 new_remaining = qty - r->filled;
    int side = r->side;
    if (price == r->price) {
        if (new_remaining <= r->remaining) {
            i64 delta = r->remaining - new_remaining;
            l->total -= delta;
            r->remaining = new_remaining;
            EMIT_OBJ(K_AMENDED, OI(o[1], 0), INT(r->owner), PyLong_FromLong(side), OI(o[2], 0), OI(o[3], 0),
                     INT(new_remaining), INT(1));
            if (delta) EMIT_LEVEL(side, l);
            return 0;
        }
        unlink_order(r, l);
        l->total += new_remaining - r->remaining;
        r->remaining = new_remaining;
        link_order(r, l);
        EMIT_OBJ(K_AMENDED, OI(o[1], 0), INT(r->owner), PyLong_FromLong(side), OI(o[2], 0), OI(o[3], 0),
                 INT(new_remaining), INT(0));
        EMIT_LEVEL(side, l);
        return 0;
    }
    i64 owner = r->owner, filled = r->filled;
    int post_only = r->post_only, stp = r->stp;
    EMIT_OBJ(K_AMENDED, OI(o[1], 0), INT(owner), PyLong_FromLong(side), OI(o[2], 0), OI(o[3], 0), INT(new_remaining),
             INT(0));
    int rc = remove_order(b, ev, r);
    order_free(b, r);
    if (rc < 0) return -1;
    i64 before = b->last_price;
    if (execute(b, ev, oid, owner, o[1], NULL, o[2], side, price, new_remaining, 1, 0, 0, GTC, post_only, stp,
                filled) < 0)
        return -1;
    if (b->last_price != before && b->n_stops) return fire_stops(b, ev);
    return 0;
}

/* ------------------------------------------------------------ Python type */

static PyObject *Book_apply(Book *b, PyObject *cmd) {
    PyTypeObject *tp = Py_TYPE(cmd);
    int (*handler)(Book *, EvBuf *, const i64 *, PyObject *const *);
    Py_ssize_t n;
    if (tp == C_PlaceLimit) { handler = cmd_limit; n = 9; }
    else if (tp == C_Amend) { handler = cmd_amend; n = 4; }
    else if (tp == C_Cancel) { handler = cmd_cancel; n = 2; }
    else if (tp == C_PlaceMarket) { handler = cmd_market; n = 8; }
    else if (tp == C_PlaceStop) { handler = cmd_stop; n = 12; }
    else {
        if (!C_PlaceLimit) PyErr_SetString(PyExc_RuntimeError, "engine core not configured");
        else PyErr_Format(PyExc_TypeError, "not an engine command: %R", cmd);
        return NULL;
    }
    if (PyTuple_GET_SIZE(cmd) != n) {
        PyErr_Format(PyExc_TypeError, "malformed command: %R", cmd);
        return NULL;
    }
    i64 f[12];
    if (read_fields(cmd, f, n) < 0) return NULL;
    if (b->busy) {
        PyErr_SetString(PyExc_RuntimeError, "order book re-entered while applying a command");
        return NULL;
    }
    b->busy = 1;
    EvBuf ev = {b->ev_items, 0, b->ev_cap};
    int rc;
    if (f[0] <= b->last_seq) {
        PyObject *items[] = {OI(PyTuple_GET_ITEM(cmd, 1), 0), INT(R_SEQ)};
        rc = push(&ev, event_from(K_REJECTED, 2, items));
    } else {
        b->last_seq = f[0];
        rc = handler(b, &ev, f, &PyTuple_GET_ITEM(cmd, 0));
    }
    b->ev_items = ev.items;
    b->ev_cap = ev.cap;
    b->busy = 0;
    PyObject *list = rc < 0 ? NULL : PyList_New(ev.n);
    if (!list) {
        for (Py_ssize_t i = 0; i < ev.n; i++) Py_DECREF(ev.items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ev.n; i++) PyList_SET_ITEM(list, i, ev.items[i]);
    return list;
}

static PyObject *py_price_or_none(const Side *s, int want_qty) {
    if (!s->n) Py_RETURN_NONE;
    Level *l = s->levels[s->n - 1];
    return want_qty ? int128_to_py(l->total) : PyLong_FromLongLong(l->price);
}

static PyObject *Book_top_raw(Book *b, PyObject *Py_UNUSED(ignored)) {
    PyObject *a = py_price_or_none(&b->bids, 0), *c = py_price_or_none(&b->bids, 1);
    PyObject *d = py_price_or_none(&b->asks, 0), *e = py_price_or_none(&b->asks, 1);
    if (!a || !c || !d || !e) { Py_XDECREF(a); Py_XDECREF(c); Py_XDECREF(d); Py_XDECREF(e); return NULL; }
    PyObject *t = PyTuple_Pack(4, a, c, d, e);
    Py_DECREF(a); Py_DECREF(c); Py_DECREF(d); Py_DECREF(e);
    return t;
}

static PyObject *side_depth(const Side *s, Py_ssize_t n) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (Py_ssize_t i = s->n - 1, k = 0; i >= 0 && k < n; i--, k++) {
        Level *l = s->levels[i];
        PyObject *p = PyLong_FromLongLong(l->price), *q = int128_to_py(l->total);
        PyObject *t = (p && q) ? PyTuple_Pack(2, p, q) : NULL;
        Py_XDECREF(p);
        Py_XDECREF(q);
        if (list_push(out, t) < 0) { Py_DECREF(out); return NULL; }
    }
    return out;
}

static PyObject *Book_depth(Book *b, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) n = 0;
    PyObject *bids = side_depth(&b->bids, n);
    if (!bids) return NULL;
    PyObject *asks = side_depth(&b->asks, n);
    if (!asks) { Py_DECREF(bids); return NULL; }
    PyObject *t = PyTuple_Pack(2, bids, asks);
    Py_DECREF(bids);
    Py_DECREF(asks);
    return t;
}

static PyObject *order_tuple(const Order *o) {
    return Py_BuildValue("(LLLLLLLL)", o->id, o->owner, (i64)o->side, o->price, o->remaining, o->filled,
                         (i64)o->post_only, (i64)o->stp);
}

static PyObject *Book_order_raw(Book *b, PyObject *arg) {
    int overflow;
    i64 id = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (id == -1 && PyErr_Occurred()) return NULL;
    Order *o = overflow ? NULL : map_get(&b->orders, id);
    if (!o) Py_RETURN_NONE;
    return order_tuple(o);
}

static PyObject *side_orders(const Side *s) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (Py_ssize_t i = s->n - 1; i >= 0; i--) {
        for (Order *o = s->levels[i]->head; o; o = o->next) {
            if (list_push(out, order_tuple(o)) < 0) { Py_DECREF(out); return NULL; }
        }
    }
    return out;
}

static PyObject *Book_export(Book *b, PyObject *Py_UNUSED(ignored)) {
    PyObject *bids = side_orders(&b->bids), *asks = NULL, *stops = NULL;
    if (!bids) return NULL;
    asks = side_orders(&b->asks);
    if (!asks) goto fail;
    stops = PyList_New(0);
    if (!stops) goto fail;
    for (Py_ssize_t i = 0; i < b->n_stops; i++) {
        Stop *s = b->stops[i];
        PyObject *t = Py_BuildValue("(LLLLLLLLLLL)", s->id, s->owner, s->side, s->trigger, s->stop_price, s->qty,
                                    s->quote, s->limit_price, s->tif, s->protection, s->stp);
        if (list_push(stops, t) < 0) goto fail;
    }
    PyObject *r = Py_BuildValue("(LLNNN)", b->last_seq, b->last_price, bids, asks, stops);
    return r;
fail:
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    Py_XDECREF(stops);
    return NULL;
}

/* _import(last_seq, last_price, bids, asks, stops) on an empty book */
static PyObject *Book_import(Book *b, PyObject *args) {
    i64 last_seq, last_price;
    PyObject *sides[2], *stops;
    if (!PyArg_ParseTuple(args, "LLOOO", &last_seq, &last_price, &sides[0], &sides[1], &stops)) return NULL;
    if (b->orders.count || b->n_stops || b->last_seq) {
        PyErr_SetString(PyExc_RuntimeError, "_import needs an empty book");
        return NULL;
    }
    for (int k = 0; k < 2; k++) {
        PyObject *seq = PySequence_Fast(sides[k], "orders must be a sequence");
        if (!seq) return NULL;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            PyObject *row = PySequence_Fast_GET_ITEM(seq, i);
            i64 v[8];
            if (!PyArg_ParseTuple(row, "LLLLLLLL", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7])) {
                Py_DECREF(seq);
                return NULL;
            }
            if ((v[2] != BUY && v[2] != SELL) || v[3] < 1 || v[4] < 1 || map_get(&b->orders, v[0])) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_ValueError, "invalid resting order in state");
                return NULL;
            }
            Order *o = order_alloc(b);
            if (!o) { Py_DECREF(seq); return NULL; }
            o->id = v[0];
            o->owner = v[1];
            o->side = (unsigned char)v[2];
            o->price = v[3];
            o->remaining = v[4];
            o->filled = v[5];
            o->post_only = (unsigned char)(v[6] != 0);
            o->stp = (unsigned char)v[7];
            if (!rest(b, o)) { order_free(b, o); Py_DECREF(seq); return NULL; }
        }
        Py_DECREF(seq);
    }
    PyObject *seq = PySequence_Fast(stops, "stops must be a sequence");
    if (!seq) return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        Stop s;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "LLLLLLLLLLL", &s.id, &s.owner, &s.side, &s.trigger,
                              &s.stop_price, &s.qty, &s.quote, &s.limit_price, &s.tif, &s.protection, &s.stp) ||
            add_stop(b, &s) < 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    b->last_seq = last_seq;
    b->last_price = last_price;
    Py_RETURN_NONE;
}

static PyObject *Book_get_last_seq(Book *b, void *Py_UNUSED(c)) { return PyLong_FromLongLong(b->last_seq); }
static PyObject *Book_get_last_price(Book *b, void *Py_UNUSED(c)) {
    if (!b->last_price) Py_RETURN_NONE;
    return PyLong_FromLongLong(b->last_price);
}

static Py_ssize_t Book_len(Book *b) { return (Py_ssize_t)b->orders.count; }

static PyObject *Book_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "the order book takes no arguments");
        return NULL;
    }
    Book *b = (Book *)type->tp_alloc(type, 0);
    if (!b) return NULL;
    if (map_init(&b->orders, 1024) < 0 || map_init(&b->stop_ids, 16) < 0) {
        Py_DECREF(b);
        return NULL;
    }
    b->ev_cap = 16;
    b->ev_items = PyMem_Malloc(b->ev_cap * sizeof(PyObject *));
    if (!b->ev_items) {
        Py_DECREF(b);
        return PyErr_NoMemory();
    }
    return (PyObject *)b;
}

static void free_side(Side *s) {
    for (Py_ssize_t i = 0; i < s->n; i++) {
        Py_CLEAR(s->levels[i]->price_obj);
        PyMem_Free(s->levels[i]);
    }
    PyMem_Free(s->levels);
    PyMem_Free(s->keys);
}

static void Book_dealloc(Book *b) {
    free_side(&b->bids);
    free_side(&b->asks);
    for (Py_ssize_t i = 0; i < b->n_free_levels; i++) PyMem_Free(b->free_levels[i]);
    PyMem_Free(b->free_levels);
    for (Py_ssize_t i = 0; i < b->n_stops; i++) PyMem_Free(b->stops[i]);
    PyMem_Free(b->stops);
    PyMem_Free(b->orders.slots);
    PyMem_Free(b->stop_ids.slots);
    PyMem_Free(b->ev_items);
    while (b->blocks) {
        Block *next = b->blocks->next;
        PyMem_Free(b->blocks);
        b->blocks = next;
    }
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static PyMethodDef Book_methods[] = {
    {"apply", (PyCFunction)Book_apply, METH_O, "Apply one command and return its events, in order."},
    {"depth", (PyCFunction)Book_depth, METH_O, "Best n levels per side as (price, qty), best first."},
    {"_top", (PyCFunction)Book_top_raw, METH_NOARGS, NULL},
    {"_order", (PyCFunction)Book_order_raw, METH_O, NULL},
    {"_export", (PyCFunction)Book_export, METH_NOARGS, NULL},
    {"_import", (PyCFunction)Book_import, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Book_getset[] = {
    {"last_seq", (getter)Book_get_last_seq, NULL, "Last applied seq.", NULL},
    {"last_price", (getter)Book_get_last_price, NULL, "Price of the last trade, None before the first.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Book_as_sequence = {.sq_length = (lenfunc)Book_len};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "matching.engine._native._book.Book",
    .tp_basicsize = sizeof(Book),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Compiled order book core; see matching.engine.NativeOrderBook.",
    .tp_new = Book_new,
    .tp_dealloc = (destructor)Book_dealloc,
    .tp_methods = Book_methods,
    .tp_getset = Book_getset,
    .tp_as_sequence = &Book_as_sequence,
};

/* configure(commands: tuple of 5 types, events: tuple of 10 types in kind order) */
static PyObject *configure(PyObject *Py_UNUSED(m), PyObject *args) {
    PyObject *cmds, *evs;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &cmds, &PyTuple_Type, &evs)) return NULL;
    if (PyTuple_GET_SIZE(cmds) != 5 || PyTuple_GET_SIZE(evs) != 10) {
        PyErr_SetString(PyExc_ValueError, "configure needs 5 command types and 10 event types");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 5; i++) {
        PyObject *t = PyTuple_GET_ITEM(cmds, i);
        if (!PyType_Check(t) || !PyType_IsSubtype((PyTypeObject *)t, &PyTuple_Type)) goto bad;
    }
    for (Py_ssize_t i = 0; i < 10; i++) {
        PyObject *t = PyTuple_GET_ITEM(evs, i);
        if (!PyType_Check(t) || !PyType_IsSubtype((PyTypeObject *)t, &PyTuple_Type)) goto bad;
    }
    PyTypeObject **slots[5] = {&C_PlaceLimit, &C_PlaceMarket, &C_PlaceStop, &C_Cancel, &C_Amend};
    for (Py_ssize_t i = 0; i < 5; i++) {
        PyObject *t = PyTuple_GET_ITEM(cmds, i);
        Py_INCREF(t);
        Py_XDECREF((PyObject *)*slots[i]);
        *slots[i] = (PyTypeObject *)t;
    }
    for (Py_ssize_t i = 0; i < 10; i++) {
        PyObject *t = PyTuple_GET_ITEM(evs, i);
        Py_INCREF(t);
        Py_XDECREF((PyObject *)E_types[i + 1]);
        E_types[i + 1] = (PyTypeObject *)t;
    }
    Py_RETURN_NONE;
bad:
    PyErr_SetString(PyExc_TypeError, "configure needs tuple subclasses");
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS, "Hand over the command and event classes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_book",
    .m_doc = "Compiled core of the Kootabase matching engine.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__book(void) {
    if (PyType_Ready(&BookType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    Py_INCREF(&BookType);
    if (PyModule_AddObject(m, "Book", (PyObject *)&BookType) < 0) {
        Py_DECREF(&BookType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
