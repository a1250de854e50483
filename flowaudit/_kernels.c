/*
 * flowaudit's compiled kernels: the serial loops of reading a capture and assembling flows.
 *
 * Each function here is a line-for-line translation of its Python reference in
 * flowaudit/capture/walk.py (walk_pcap, walk_pcapng), flowaudit/capture/decode.py
 * (decode_records) and flowaudit/flow_kernel.py (rebuild_table, update_flows). The Python
 * functions are the specification and the fallback where this extension could not be built;
 * tests/test_kernels.py holds both to the same results on every corpus capture and on
 * damaged and random input. Read the Python first: the comments there say why, the ones here
 * only what C needs said.
 *
 * Arrays arrive through the buffer protocol (numpy arrays), never numpy's C API, so building
 * needs no numpy headers. Every array is checked for item size, C-contiguity and length
 * before the loop, and every index into a byte buffer is checked against its length: a
 * damaged capture can make a loop stop early, never read or write outside an array.
 * The loops run without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- constants (Python's) */

/* walk.py */
#define NEED_MORE 0
#define FULL 1
#define BAD_RECORD 2
#define PYTHON_BLOCK 3
#define MAX_RECORD 262144
#define MAX_BLOCK (256 * 1024 * 1024)
#define PCAPNG_SHB 0x0A0D0D0Au
#define PCAPNG_IDB 0x00000001u
#define PCAPNG_OPB 0x00000002u
#define PCAPNG_SPB 0x00000003u
#define PCAPNG_EPB 0x00000006u
#define TS_MUL 0
#define TS_DIV 1
#define TS_BIN 2

/* batch.py */
#define L3_NONE 0
#define L3_IPV4 4
#define L3_IPV6 6
#define FRAG_NONE 0
#define FRAG_FIRST 1
#define FRAG_LATER 2
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

/* decode.py */
#define LINKTYPE_NULL 0
#define LINKTYPE_ETHERNET 1
#define LINKTYPE_RAW_DLT12 12
#define LINKTYPE_RAW_DLT14 14
#define LINKTYPE_RAW 101
#define LINKTYPE_LOOP 108
#define LINKTYPE_LINUX_SLL 113
#define LINKTYPE_IPV4 228
#define LINKTYPE_IPV6 229
#define LINKTYPE_LINUX_SLL2 276
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86DD
#define IPV4_MAPPED 0x0000FFFF00000000ull

/* flow_kernel.py */
#define SYN_A 0x001
#define SYN_B 0x002
#define SYNACK_A 0x004
#define SYNACK_B 0x008
#define HANDSHAKE 0x010
#define FIN_A 0x020
#define FIN_B 0x040
#define RST_SEEN 0x080
#define BASE_A 0x100
#define BASE_B 0x200
#define PAY_NONE 0
#define PAY_OPEN 1
#define PAY_DONE 2
#define K_DONE 0
#define NEED_ROWS 1
#define NEED_TABLE 2
#define NEED_SLOTS 3

/* One flow: flow_kernel.FLOW_DTYPE (aligned), field for field. flow_layout() gives the
 * offsets to Python, which refuses this module if they differ from the dtype's. */
typedef struct {
    uint64_t a_hi, a_lo, b_hi, b_lo;
    uint16_t a_port, b_port;
    uint8_t proto, l3, b_group;
    int64_t first_ts, last_ts;
    int32_t first_file, last_file;
    int64_t first_frame, last_frame;
    int64_t pkts_ab, pkts_ba, bytes_ab, bytes_ba;
    uint8_t flags_ab, flags_ba;
    uint16_t tcp;
    uint32_t base_seq_ab, base_seq_ba, next_seq_ab, next_seq_ba;
    uint8_t pay_state_ab, pay_state_ba;
    int32_t pay_slot_ab, pay_slot_ba, pay_len_ab, pay_len_ba;
} Flow;

/* ---------------------------------------------------------------- buffers */

typedef struct {
    Py_buffer view;
    int held;
} Buf;

#define MAX_BUFS 40

typedef struct {
    Buf b[MAX_BUFS];
    int n;
} Bufs;

static void release_all(Bufs *bufs)
{
    for (int i = 0; i < bufs->n; i++) {
        if (bufs->b[i].held) {
            PyBuffer_Release(&bufs->b[i].view);
            bufs->b[i].held = 0;
        }
    }
    bufs->n = 0;
}

/* The memory of ``obj`` as a C-contiguous array of ``itemsize``-byte items, with at least
 * ``min_items`` of them; NULL with an exception set otherwise. */
static void *take(Bufs *bufs, PyObject *obj, Py_ssize_t itemsize, int writable,
                  Py_ssize_t min_items, Py_ssize_t *items, const char *name)
{
    if (bufs->n >= MAX_BUFS) {
        PyErr_SetString(PyExc_RuntimeError, "too many arrays");
        return NULL;
    }
    Buf *buf = &bufs->b[bufs->n];
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &buf->view, flags) < 0)
        return NULL;
    buf->held = 1;
    bufs->n++;
    if (buf->view.itemsize != itemsize || !PyBuffer_IsContiguous(&buf->view, 'C')) {
        PyErr_Format(PyExc_TypeError, "%s: a contiguous array of %zd-byte items is needed",
                     name, itemsize);
        return NULL;
    }
    Py_ssize_t n = buf->view.len / itemsize;
    if (n < min_items) {
        PyErr_Format(PyExc_ValueError, "%s: %zd items, %zd needed", name, n, min_items);
        return NULL;
    }
    if (items != NULL)
        *items = n;
    return buf->view.buf;
}

/* The length of the second dimension of the last array taken (1 for a 1-d array). */
static Py_ssize_t last_width(Bufs *bufs)
{
    Py_buffer *view = &bufs->b[bufs->n - 1].view;
    if (view->ndim < 2 || view->shape == NULL)
        return 1;
    Py_ssize_t width = 1;
    for (int d = 1; d < view->ndim; d++)
        width *= view->shape[d];
    return width;
}

/* The record columns a walker fills (walk.RecordColumns.outputs()), all of ``capacity``. */
typedef struct {
    int64_t *offset;
    uint32_t *caplen, *wire_len;
    int64_t *ts_ns;
    int32_t *if_id;
    Py_ssize_t capacity;
} Records;

static int take_records(Bufs *bufs, PyObject *const o[5], Records *r)
{
    r->offset = take(bufs, o[0], 8, 1, 0, &r->capacity, "offset");
    r->caplen = r->offset ? take(bufs, o[1], 4, 1, r->capacity, NULL, "caplen") : NULL;
    r->wire_len = r->caplen ? take(bufs, o[2], 4, 1, r->capacity, NULL, "wire_len") : NULL;
    r->ts_ns = r->wire_len ? take(bufs, o[3], 8, 1, r->capacity, NULL, "ts_ns") : NULL;
    r->if_id = r->ts_ns ? take(bufs, o[4], 4, 1, r->capacity, NULL, "if_id") : NULL;
    return r->if_id != NULL ? 0 : -1;
}

/* The columns the decoder fills and the flow update reads (batch.DECODED_COLUMNS, in order),
 * each of at least ``count`` items. */
typedef struct {
    uint8_t *l3, *proto;
    uint64_t *src_hi, *src_lo, *dst_hi, *dst_lo;
    uint16_t *sport, *dport;
    uint8_t *tcp_flags;
    uint32_t *tcp_seq;
    int64_t *payload_off;
    uint32_t *payload_len, *payload_cap;
    uint8_t *l2_multicast, *frag;
    uint32_t *frag_id;
} Decoded;

static int take_decoded(Bufs *bufs, PyObject *const o[16], int writable, int64_t count, Decoded *d)
{
    memset(d, 0, sizeof(*d));
    int w = writable;
    if (!(d->l3 = take(bufs, o[0], 1, w, count, NULL, "l3"))
        || !(d->proto = take(bufs, o[1], 1, w, count, NULL, "proto"))
        || !(d->src_hi = take(bufs, o[2], 8, w, count, NULL, "src_hi"))
        || !(d->src_lo = take(bufs, o[3], 8, w, count, NULL, "src_lo"))
        || !(d->dst_hi = take(bufs, o[4], 8, w, count, NULL, "dst_hi"))
        || !(d->dst_lo = take(bufs, o[5], 8, w, count, NULL, "dst_lo"))
        || !(d->sport = take(bufs, o[6], 2, w, count, NULL, "sport"))
        || !(d->dport = take(bufs, o[7], 2, w, count, NULL, "dport"))
        || !(d->tcp_flags = take(bufs, o[8], 1, w, count, NULL, "tcp_flags"))
        || !(d->tcp_seq = take(bufs, o[9], 4, w, count, NULL, "tcp_seq"))
        || !(d->payload_off = take(bufs, o[10], 8, w, count, NULL, "payload_off"))
        || !(d->payload_len = take(bufs, o[11], 4, w, count, NULL, "payload_len"))
        || !(d->payload_cap = take(bufs, o[12], 4, w, count, NULL, "payload_cap"))
        || !(d->l2_multicast = take(bufs, o[13], 1, w, count, NULL, "l2_multicast"))
        || !(d->frag = take(bufs, o[14], 1, w, count, NULL, "frag"))
        || !(d->frag_id = take(bufs, o[15], 4, w, count, NULL, "frag_id")))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- byte readers (_bytes.py) */

static inline int64_t be16(const uint8_t *b, int64_t p) { return ((int64_t)b[p] << 8) | b[p + 1]; }
static inline int64_t le16(const uint8_t *b, int64_t p) { return ((int64_t)b[p + 1] << 8) | b[p]; }
static inline int64_t be32(const uint8_t *b, int64_t p)
{
    return ((int64_t)b[p] << 24) | ((int64_t)b[p + 1] << 16) | ((int64_t)b[p + 2] << 8) | b[p + 3];
}
static inline int64_t le32(const uint8_t *b, int64_t p)
{
    return ((int64_t)b[p + 3] << 24) | ((int64_t)b[p + 2] << 16) | ((int64_t)b[p + 1] << 8) | b[p];
}
static inline int64_t u16(const uint8_t *b, int64_t p, int big) { return big ? be16(b, p) : le16(b, p); }
static inline int64_t u32(const uint8_t *b, int64_t p, int big) { return big ? be32(b, p) : le32(b, p); }
static inline uint64_t be64(const uint8_t *b, int64_t p)
{
    return ((uint64_t)be32(b, p) << 32) | (uint64_t)be32(b, p + 4);
}

/* ---------------------------------------------------------------- walkers (walk.py) */

static PyObject *k_walk_pcap(PyObject *self, PyObject *args)
{
    PyObject *o_buf, *o_off, *o_cap, *o_wire, *o_ts, *o_if;
    long long pos, end, frac_ns;
    int big;
    if (!PyArg_ParseTuple(args, "OLLpLOOOOO", &o_buf, &pos, &end, &big, &frac_ns, &o_off,
                          &o_cap, &o_wire, &o_ts, &o_if))
        return NULL;
    Bufs bufs = {.n = 0};
    Py_ssize_t buflen;
    Records r;
    PyObject *const o_records[5] = {o_off, o_cap, o_wire, o_ts, o_if};
    const uint8_t *buf = take(&bufs, o_buf, 1, 0, 0, &buflen, "buf");
    if (buf == NULL || take_records(&bufs, o_records, &r) < 0) {
        release_all(&bufs);
        return NULL;
    }
    const Py_ssize_t capacity = r.capacity;
    if (end > buflen)
        end = buflen;
    int64_t count = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        if (pos < 0 || pos + 16 > end) {
            status = NEED_MORE;
            break;
        }
        int64_t included = u32(buf, pos + 8, big);
        if (included > MAX_RECORD) {
            status = BAD_RECORD;
            break;
        }
        if (pos + 16 + included > end) {
            status = NEED_MORE;
            break;
        }
        if (count == capacity) {
            status = FULL;
            break;
        }
        int64_t seconds = u32(buf, pos, big);
        int64_t fraction = u32(buf, pos + 4, big);
        r.offset[count] = pos + 16;
        r.caplen[count] = (uint32_t)included;
        r.wire_len[count] = (uint32_t)u32(buf, pos + 12, big);
        r.ts_ns[count] = seconds * 1000000000LL + fraction * frac_ns;
        r.if_id[count] = 0;
        count++;
        pos += 16 + included;
    }
    Py_END_ALLOW_THREADS
    release_all(&bufs);
    return Py_BuildValue("LLi", (long long)count, (long long)pos, status);
}

/* A pcapng timestamp in ns; 0 with *bad set when it lies outside int64 nanoseconds (or is
 * int64's minimum, which numpy reads as NaT). */
static inline int64_t pcapng_ts(uint64_t raw, int kind, int64_t factor, int64_t offset_ns, int *bad)
{
    int64_t value, whole;
    if (kind == TS_MUL) {
        if (raw > (uint64_t)INT64_MAX || __builtin_mul_overflow((int64_t)raw, factor, &value))
            goto out_of_range;
    } else if (kind == TS_DIV) {
        value = (int64_t)(raw / (uint64_t)(factor > 0 ? factor : 1));
    } else {
        uint64_t w = factor >= 64 ? 0 : raw >> factor;
        uint64_t part = factor >= 64 ? raw : raw & ((1ull << factor) - 1ull);
        uint64_t frac;
        if (factor <= 32)
            frac = (part * 1000000000ull) >> factor;
        else
            frac = (uint64_t)((double)part * 1e9 / (double)(factor >= 64 ? 18446744073709551616.0
                                                                         : (double)(1ull << factor)));
        if (w > (uint64_t)INT64_MAX || __builtin_mul_overflow((int64_t)w, (int64_t)1000000000, &whole)
            || __builtin_add_overflow(whole, (int64_t)frac, &value))
            goto out_of_range;
    }
    if (__builtin_add_overflow(value, offset_ns, &value) || value == INT64_MIN)
        goto out_of_range;
    return value;
out_of_range:
    *bad = 1;
    return 0;
}

static PyObject *k_walk_pcapng(PyObject *self, PyObject *args)
{
    PyObject *o_buf, *o_kind, *o_factor, *o_offns, *o_snap, *o_off, *o_cap, *o_wire, *o_ts,
        *o_if, *o_bad;
    long long pos, end, last_ts;
    int big;
    if (!PyArg_ParseTuple(args, "OLLpOOOOLOOOOOO", &o_buf, &pos, &end, &big, &o_kind, &o_factor,
                          &o_offns, &o_snap, &last_ts, &o_off, &o_cap, &o_wire, &o_ts, &o_if,
                          &o_bad))
        return NULL;
    Bufs bufs = {.n = 0};
    Py_ssize_t buflen, interfaces;
    const uint8_t *buf = take(&bufs, o_buf, 1, 0, 0, &buflen, "buf");
    int64_t *if_kind = buf ? take(&bufs, o_kind, 8, 0, 0, &interfaces, "if_kind") : NULL;
    int64_t *if_factor = if_kind ? take(&bufs, o_factor, 8, 0, interfaces, NULL, "if_factor") : NULL;
    int64_t *if_offns = if_factor ? take(&bufs, o_offns, 8, 0, interfaces, NULL, "if_offset_ns") : NULL;
    int64_t *if_snap = if_offns ? take(&bufs, o_snap, 8, 0, interfaces, NULL, "if_snaplen") : NULL;
    Records r;
    PyObject *const o_records[5] = {o_off, o_cap, o_wire, o_ts, o_if};
    int64_t *stats = (if_snap && take_records(&bufs, o_records, &r) == 0)
                         ? take(&bufs, o_bad, 8, 1, 2, NULL, "stats")
                         : NULL;
    if (stats == NULL) {
        release_all(&bufs);
        return NULL;
    }
    const Py_ssize_t capacity = r.capacity;
    if (end > buflen)
        end = buflen;
    int64_t count = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        if (pos < 0 || pos + 12 > end) {
            status = NEED_MORE;
            break;
        }
        uint32_t block_type = (uint32_t)u32(buf, pos, big);
        if (block_type == PCAPNG_SHB || block_type == PCAPNG_IDB) {
            status = PYTHON_BLOCK;
            break;
        }
        int64_t block_len = u32(buf, pos + 4, big);
        if (block_len < 12 || block_len % 4 != 0 || block_len > MAX_BLOCK) {
            status = BAD_RECORD;
            break;
        }
        if (block_type != PCAPNG_EPB && block_type != PCAPNG_SPB && block_type != PCAPNG_OPB) {
            if (pos + block_len <= end && u32(buf, pos + block_len - 4, big) != block_len)
                stats[1]++;
            pos += block_len;
            if (pos > end) {
                status = NEED_MORE;
                break;
            }
            continue;
        }
        if (block_len > MAX_RECORD + 4096) {
            status = BAD_RECORD;
            break;
        }
        if (block_len < (block_type == PCAPNG_SPB ? 16 : 32)) {
            status = BAD_RECORD;
            break;
        }
        if (pos + block_len > end) {
            status = NEED_MORE;
            break;
        }
        if (count == capacity) {
            status = FULL;
            break;
        }
        int64_t interface, original, included, data, header;
        if (block_type == PCAPNG_SPB) {
            interface = 0;
            original = u32(buf, pos + 8, big);
            included = original < block_len - 16 ? original : block_len - 16;
            if (interfaces > 0 && if_snap[0] > 0 && if_snap[0] < included)
                included = if_snap[0];
            data = pos + 12;
            header = 16;
        } else {
            interface = block_type == PCAPNG_EPB ? u32(buf, pos + 8, big) : u16(buf, pos + 8, big);
            included = u32(buf, pos + 20, big);
            original = u32(buf, pos + 24, big);
            data = pos + 28;
            header = 32;
        }
        if (interface >= interfaces || included > block_len - header) {
            status = BAD_RECORD;
            break;
        }
        if (block_type != PCAPNG_SPB) {
            uint64_t raw = ((uint64_t)u32(buf, pos + 12, big) << 32) | (uint64_t)u32(buf, pos + 16, big);
            int bad = 0;
            int64_t ts = pcapng_ts(raw, if_kind[interface], if_factor[interface],
                                   if_offns[interface], &bad);
            if (bad)
                stats[0]++; /* keeps the time of the packet before it, as an SPB does */
            else
                last_ts = ts;
        }
        if (u32(buf, pos + block_len - 4, big) != block_len)
            stats[1]++;
        r.offset[count] = data;
        r.caplen[count] = (uint32_t)included;
        r.wire_len[count] = (uint32_t)original;
        r.ts_ns[count] = last_ts;
        r.if_id[count] = (int32_t)interface;
        count++;
        pos += block_len;
    }
    Py_END_ALLOW_THREADS
    release_all(&bufs);
    return Py_BuildValue("LLiL", (long long)count, (long long)pos, status, (long long)last_ts);
}

/* ---------------------------------------------------------------- decoder (decode.py) */

static inline int is_vlan(int64_t t) { return t == 0x8100 || t == 0x88A8 || t == 0x9100 || t == 0x9200; }

static inline int64_t bsd_family_to_ethertype(int64_t family)
{
    if (family == 2)
        return ETHERTYPE_IPV4;
    if (family == 10 || family == 24 || family == 28 || family == 30)
        return ETHERTYPE_IPV6;
    return -1;
}

static PyObject *k_decode_records(PyObject *self, PyObject *args)
{
    PyObject *o[22];
    long long count_ll;
    if (!PyArg_ParseTuple(args, "OLOOOOOOOOOOOOOOOOOOOO", &o[0], &count_ll, &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13],
                          &o[14], &o[15], &o[16], &o[17], &o[18], &o[19], &o[20]))
        return NULL;
    Bufs bufs = {.n = 0};
    Py_ssize_t buflen, n_links;
    int64_t count = count_ll;
    if (count < 0)
        count = 0;
    const uint8_t *buf = take(&bufs, o[0], 1, 0, 0, &buflen, "buf");
    int64_t *rec_offset = buf ? take(&bufs, o[1], 8, 0, count, NULL, "rec_offset") : NULL;
    uint32_t *rec_caplen = rec_offset ? take(&bufs, o[2], 4, 0, count, NULL, "rec_caplen") : NULL;
    int32_t *rec_if = rec_caplen ? take(&bufs, o[3], 4, 0, count, NULL, "rec_if") : NULL;
    int32_t *if_linktype = rec_if ? take(&bufs, o[4], 4, 0, 0, &n_links, "if_linktype") : NULL;
    Decoded d;
    if (if_linktype == NULL || take_decoded(&bufs, &o[5], 1, count, &d) < 0) {
        release_all(&bufs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < count; i++) {
        int64_t start = rec_offset[i];
        int64_t end = start + (int64_t)rec_caplen[i];
        if (end > buflen)
            end = buflen;
        int32_t iface = rec_if[i];
        int64_t linktype = (iface >= 0 && iface < n_links) ? if_linktype[iface] : -1;
        d.l3[i] = L3_NONE;
        d.proto[i] = 0;
        d.src_hi[i] = d.src_lo[i] = d.dst_hi[i] = d.dst_lo[i] = 0;
        d.sport[i] = d.dport[i] = 0;
        d.tcp_flags[i] = 0;
        d.tcp_seq[i] = 0;
        d.payload_off[i] = 0;
        d.payload_len[i] = 0;
        d.payload_cap[i] = 0;
        d.l2_multicast[i] = 0;
        d.frag[i] = FRAG_NONE;
        d.frag_id[i] = 0;
        if (start < 0 || start > end)
            continue;

        int64_t pos = start;
        int64_t ethertype = -1;
        if (linktype == LINKTYPE_ETHERNET) {
            if (end - pos < 14)
                continue;
            d.l2_multicast[i] = (buf[pos] & 1) == 1;
            ethertype = be16(buf, pos + 12);
            pos += 14;
        } else if (linktype == LINKTYPE_LINUX_SLL) {
            if (end - pos < 16)
                continue;
            int64_t packet_type = be16(buf, pos);
            d.l2_multicast[i] = packet_type == 1 || packet_type == 2;
            ethertype = be16(buf, pos + 14);
            pos += 16;
        } else if (linktype == LINKTYPE_LINUX_SLL2) {
            if (end - pos < 20)
                continue;
            ethertype = be16(buf, pos);
            int64_t packet_type = buf[pos + 10];
            d.l2_multicast[i] = packet_type == 1 || packet_type == 2;
            pos += 20;
        } else if (linktype == LINKTYPE_NULL) {
            if (end - pos < 4)
                continue;
            int64_t family = le32(buf, pos);
            if (family > 0xFFFF)
                family = be32(buf, pos);
            ethertype = bsd_family_to_ethertype(family);
            pos += 4;
        } else if (linktype == LINKTYPE_LOOP) {
            if (end - pos < 4)
                continue;
            ethertype = bsd_family_to_ethertype(be32(buf, pos));
            pos += 4;
        } else if (linktype == LINKTYPE_RAW || linktype == LINKTYPE_RAW_DLT12
                   || linktype == LINKTYPE_RAW_DLT14 || linktype == LINKTYPE_IPV4
                   || linktype == LINKTYPE_IPV6) {
            if (end - pos < 1)
                continue;
            int version = buf[pos] >> 4;
            if (version == 4)
                ethertype = ETHERTYPE_IPV4;
            else if (version == 6)
                ethertype = ETHERTYPE_IPV6;
        } else {
            continue;
        }

        while (is_vlan(ethertype) && end - pos >= 4) {
            ethertype = be16(buf, pos + 2);
            pos += 4;
        }
        if (ethertype >= 0 && ethertype < 0x0600 && end - pos >= 8) {
            if (buf[pos] == 0xAA && buf[pos + 1] == 0xAA && buf[pos + 2] == 0x03) {
                ethertype = be16(buf, pos + 6);
                pos += 8;
            }
        }

        int64_t transport = -1, l4 = 0, l4_end = 0;
        if (ethertype == ETHERTYPE_IPV4) {
            if (end - pos < 20 || (buf[pos] >> 4) != 4)
                continue;
            int64_t header_len = (buf[pos] & 0x0F) * 4;
            if (header_len < 20 || end - pos < header_len)
                continue;
            int64_t total_len = be16(buf, pos + 2);
            if (total_len < header_len)
                total_len = end - pos;
            d.l3[i] = L3_IPV4;
            transport = buf[pos + 9];
            d.proto[i] = (uint8_t)transport;
            d.src_lo[i] = IPV4_MAPPED | (uint64_t)be32(buf, pos + 12);
            d.dst_lo[i] = IPV4_MAPPED | (uint64_t)be32(buf, pos + 16);
            int64_t flags_offset = be16(buf, pos + 6);
            int64_t fragment_offset = flags_offset & 0x1FFF;
            int more_fragments = (flags_offset & 0x2000) != 0;
            if (fragment_offset != 0 || more_fragments) {
                d.frag_id[i] = (uint32_t)be16(buf, pos + 4);
                d.frag[i] = fragment_offset != 0 ? FRAG_LATER : FRAG_FIRST;
            }
            l4 = pos + header_len;
            l4_end = pos + total_len;
        } else if (ethertype == ETHERTYPE_IPV6) {
            if (end - pos < 40 || (buf[pos] >> 4) != 6)
                continue;
            d.l3[i] = L3_IPV6;
            d.src_hi[i] = be64(buf, pos + 8);
            d.src_lo[i] = be64(buf, pos + 16);
            d.dst_hi[i] = be64(buf, pos + 24);
            d.dst_lo[i] = be64(buf, pos + 32);
            int64_t payload_length = be16(buf, pos + 4);
            l4_end = payload_length ? pos + 40 + payload_length : end;
            int64_t next_header = buf[pos + 6];
            l4 = pos + 40;
            for (;;) {
                if (next_header == 0 || next_header == 43 || next_header == 60 || next_header == 135
                    || next_header == 139 || next_header == 140) {
                    if (end - l4 < 2)
                        break;
                    int64_t following = buf[l4];
                    l4 += ((int64_t)buf[l4 + 1] + 1) * 8;
                    next_header = following;
                } else if (next_header == 51) {
                    if (end - l4 < 2)
                        break;
                    int64_t following = buf[l4];
                    l4 += ((int64_t)buf[l4 + 1] + 2) * 4;
                    next_header = following;
                } else if (next_header == 44) {
                    if (end - l4 < 8)
                        break;
                    int64_t following = buf[l4];
                    int64_t offset_flags = be16(buf, l4 + 2);
                    d.frag_id[i] = (uint32_t)be32(buf, l4 + 4);
                    d.frag[i] = (offset_flags >> 3) != 0 ? FRAG_LATER : FRAG_FIRST;
                    if ((offset_flags >> 3) == 0 && (offset_flags & 1) == 0)
                        d.frag[i] = FRAG_NONE;
                    l4 += 8;
                    next_header = following;
                } else {
                    break;
                }
            }
            d.proto[i] = (uint8_t)next_header;
            transport = next_header;
        } else {
            continue;
        }

        if (d.frag[i] == FRAG_LATER)
            continue;
        int64_t cap_end = end < l4_end ? end : l4_end;

        if (transport == IPPROTO_TCP_) {
            if (cap_end - l4 < 4)
                continue;
            d.sport[i] = (uint16_t)be16(buf, l4);
            d.dport[i] = (uint16_t)be16(buf, l4 + 2);
            if (cap_end - l4 < 14)
                continue;
            d.tcp_seq[i] = (uint32_t)be32(buf, l4 + 4);
            d.tcp_flags[i] = buf[l4 + 13];
            int64_t header_len = (buf[l4 + 12] >> 4) * 4;
            int64_t data = l4 + header_len;
            if (header_len < 20 || data > l4_end)
                continue;
            d.payload_off[i] = data;
            d.payload_len[i] = (uint32_t)(l4_end - data);
            d.payload_cap[i] = (uint32_t)(cap_end - data > 0 ? cap_end - data : 0);
        } else if (transport == IPPROTO_UDP_) {
            if (cap_end - l4 < 4)
                continue;
            d.sport[i] = (uint16_t)be16(buf, l4);
            d.dport[i] = (uint16_t)be16(buf, l4 + 2);
            int64_t data = l4 + 8;
            if (data > l4_end)
                continue;
            if (cap_end - l4 >= 6) {
                int64_t datagram = be16(buf, l4 + 4);
                if (8 <= datagram && datagram < l4_end - l4 && d.frag[i] == FRAG_NONE) {
                    l4_end = l4 + datagram;
                    if (l4_end < cap_end)
                        cap_end = l4_end;
                }
            }
            d.payload_off[i] = data;
            d.payload_len[i] = (uint32_t)(l4_end - data);
            d.payload_cap[i] = (uint32_t)(cap_end - data > 0 ? cap_end - data : 0);
        }
    }
    Py_END_ALLOW_THREADS
    release_all(&bufs);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- flows (flow_kernel.py) */

#define FRAG_CACHE (1 << 16)

static inline uint64_t mix(uint64_t v)
{
    v ^= v >> 30;
    v *= 0xBF58476D1CE4E5B9ull;
    v ^= v >> 27;
    v *= 0x94D049BB133111EBull;
    v ^= v >> 31;
    return v;
}

static inline uint64_t pair_hash(uint64_t s_hi, uint64_t s_lo, uint64_t d_hi, uint64_t d_lo,
                                 int64_t s_port, int64_t d_port, int64_t proto)
{
    uint64_t ports = (uint64_t)((s_port ^ d_port) | ((s_port + d_port) << 17));
    return mix((s_lo ^ d_lo) ^ mix(s_hi ^ d_hi) ^ (ports << 24) ^ (uint64_t)proto);
}

static inline int same_key(const Flow *g, const Flow *f)
{
    return g->proto == f->proto && g->a_port == f->a_port && g->b_port == f->b_port
           && g->a_lo == f->a_lo && g->b_lo == f->b_lo && g->a_hi == f->a_hi && g->b_hi == f->b_hi;
}

static PyObject *k_rebuild_table(PyObject *self, PyObject *args)
{
    PyObject *o_flows, *o_table;
    long long n_flows;
    if (!PyArg_ParseTuple(args, "OLO", &o_flows, &n_flows, &o_table))
        return NULL;
    Bufs bufs = {.n = 0};
    Py_ssize_t table_len;
    Flow *flows = take(&bufs, o_flows, sizeof(Flow), 1, n_flows, NULL, "flows");
    int64_t *table = flows ? take(&bufs, o_table, 8, 1, 1, &table_len, "table") : NULL;
    if (table == NULL) {
        release_all(&bufs);
        return NULL;
    }
    if ((table_len & (table_len - 1)) != 0 || table_len < 2 * n_flows) {
        release_all(&bufs);
        PyErr_SetString(PyExc_ValueError, "table: a power of two, twice the flows, is needed");
        return NULL;
    }
    uint64_t mask = (uint64_t)table_len - 1;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t row = 0; row < n_flows; row++) {
        const Flow *f = &flows[row];
        uint64_t slot = pair_hash(f->a_hi, f->a_lo, f->b_hi, f->b_lo, f->a_port, f->b_port, f->proto) & mask;
        for (;;) {
            int64_t other = table[slot];
            if (other < 0 || same_key(&flows[other], f)) {
                table[slot] = row;
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    Py_END_ALLOW_THREADS
    release_all(&bufs);
    Py_RETURN_NONE;
}

static PyObject *k_update_flows(PyObject *self, PyObject *args)
{
    PyObject *o[28];
    long long start, count, file_index, n_flows, n_slots, idle_ns;
    if (!PyArg_ParseTuple(args, "LLLOOOOOOOOOOOOOOOOOOOOOLOOLOOLOOO", &start, &count, &file_index,
                          &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9],
                          &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16], &o[17], &o[18],
                          &o[19], &o[20], &n_flows, &o[21], &o[22], &n_slots, &o[23], &o[24],
                          &idle_ns, &o[25], &o[26], &o[27]))
        return NULL;
    Bufs bufs = {.n = 0};
    Py_ssize_t buflen, max_flows, table_len, arena_len, arena_rows = 0, max_payload = 0;
    if (count < 0)
        count = 0;
    int64_t *frame = take(&bufs, o[0], 8, 0, count, NULL, "frame");
    int64_t *ts_ns = frame ? take(&bufs, o[1], 8, 0, count, NULL, "ts_ns") : NULL;
    uint32_t *wire_len = ts_ns ? take(&bufs, o[2], 4, 0, count, NULL, "wire_len") : NULL;
    Decoded d;
    int decoded = wire_len != NULL && take_decoded(&bufs, &o[3], 0, count, &d) == 0;
    const uint8_t *buf = decoded ? take(&bufs, o[19], 1, 0, 0, &buflen, "buf") : NULL;
    Flow *flows = buf ? take(&bufs, o[20], sizeof(Flow), 1, n_flows, &max_flows, "flows") : NULL;
    int64_t *table = flows ? take(&bufs, o[21], 8, 1, 1, &table_len, "table") : NULL;
    uint8_t *arena = table ? take(&bufs, o[22], 1, 1, 0, &arena_len, "arena") : NULL;
    if (arena != NULL) {
        max_payload = last_width(&bufs);
        arena_rows = max_payload > 0 ? arena_len / max_payload : 0;
        if (bufs.b[bufs.n - 1].view.ndim != 2) {
            PyErr_SetString(PyExc_ValueError, "arena: a 2-d array is needed");
            arena = NULL;
        }
    }
    uint64_t *frag_keys = arena ? take(&bufs, o[23], 8, 1, FRAG_CACHE * 5, NULL, "frag_keys") : NULL;
    int64_t *frag_rows = frag_keys ? take(&bufs, o[24], 8, 1, FRAG_CACHE, NULL, "frag_rows") : NULL;
    int64_t *orphans = frag_rows ? take(&bufs, o[25], 8, 1, 1, NULL, "orphans") : NULL;
    int64_t *pkt_row = orphans ? take(&bufs, o[26], 8, 1, count, NULL, "pkt_row") : NULL;
    uint8_t *pkt_fwd = pkt_row ? take(&bufs, o[27], 1, 1, count, NULL, "pkt_fwd") : NULL;
    if (pkt_fwd == NULL) {
        release_all(&bufs);
        return NULL;
    }
    if ((table_len & (table_len - 1)) != 0 || n_flows > max_flows || n_slots > arena_rows
        || n_slots < 0 || n_flows < 0 || start < 0 || 2 * n_flows > table_len) {
        release_all(&bufs);
        PyErr_SetString(PyExc_ValueError, "update_flows: inconsistent table sizes");
        return NULL;
    }
    uint64_t mask = (uint64_t)table_len - 1;
    int status = K_DONE;
    int64_t i;
    Py_BEGIN_ALLOW_THREADS
    for (i = start; i < count; i++) {
        pkt_row[i] = -1;
        if (d.l3[i] == L3_NONE)
            continue;
        if (max_payload > 0 && n_slots == arena_rows) {
            status = NEED_SLOTS;
            break;
        }
        uint64_t s_hi = d.src_hi[i], s_lo = d.src_lo[i], d_hi = d.dst_hi[i], d_lo = d.dst_lo[i];
        int64_t p = d.proto[i];
        int64_t ts = ts_ns[i];
        int64_t length = wire_len[i];
        Flow *f;

        if (d.frag[i] == FRAG_LATER) {
            uint64_t key = (uint64_t)d.frag_id[i] | ((uint64_t)p << 32);
            uint64_t fslot = mix(s_lo ^ (d_lo << 1) ^ mix(s_hi ^ d_hi) ^ key) & (FRAG_CACHE - 1);
            int64_t row = frag_rows[fslot];
            uint64_t *k = &frag_keys[fslot * 5];
            if (row >= 0 && row < n_flows && k[0] == s_hi && k[1] == s_lo && k[2] == d_hi
                && k[3] == d_lo && k[4] == key) {
                f = &flows[row];
                if (f->a_lo == s_lo && f->a_hi == s_hi) {
                    f->pkts_ab += 1;
                    f->bytes_ab += length;
                } else {
                    f->pkts_ba += 1;
                    f->bytes_ba += length;
                }
                if (ts > f->last_ts)
                    f->last_ts = ts;
                f->last_file = (int32_t)file_index;
                f->last_frame = frame[i];
            } else {
                orphans[0] += 1;
            }
            continue;
        }

        int64_t s_port = d.sport[i], d_port = d.dport[i];
        int64_t flags = d.tcp_flags[i];
        uint32_t seq = d.tcp_seq[i];

        uint64_t slot = pair_hash(s_hi, s_lo, d_hi, d_lo, s_port, d_port, p) & mask;
        int64_t row = -1;
        int forward = 1;
        for (;;) {
            int64_t other = table[slot];
            if (other < 0)
                break;
            const Flow *g = &flows[other];
            if (g->proto == p) {
                if (g->a_port == s_port && g->b_port == d_port && g->a_lo == s_lo
                    && g->b_lo == d_lo && g->a_hi == s_hi && g->b_hi == d_hi) {
                    row = other;
                    forward = 1;
                    break;
                }
                if (g->a_port == d_port && g->b_port == s_port && g->a_lo == d_lo
                    && g->b_lo == s_lo && g->a_hi == d_hi && g->b_hi == s_hi) {
                    row = other;
                    forward = 0;
                    break;
                }
            }
            slot = (slot + 1) & mask;
        }

        int new_flow = row < 0;
        if (!new_flow) {
            f = &flows[row];
            if (p == IPPROTO_TCP_) {
                if ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
                    int known;
                    uint32_t base;
                    if (forward) {
                        known = (f->tcp & BASE_A) != 0;
                        base = f->base_seq_ab;
                    } else {
                        known = (f->tcp & BASE_B) != 0;
                        base = f->base_seq_ba;
                    }
                    if (known && base != seq)
                        new_flow = 1;
                }
            } else if (idle_ns > 0 && ts - f->last_ts > idle_ns) {
                new_flow = 1;
            }
        }

        if (new_flow) {
            if (n_flows == max_flows) {
                status = NEED_ROWS;
                break;
            }
            if (row < 0 && 2 * (n_flows + 1) > table_len) {
                status = NEED_TABLE;
                break;
            }
            row = n_flows;
            n_flows++;
            table[slot] = row;
            forward = 1;
            f = &flows[row];
            f->a_hi = s_hi;
            f->a_lo = s_lo;
            f->b_hi = d_hi;
            f->b_lo = d_lo;
            f->a_port = (uint16_t)s_port;
            f->b_port = (uint16_t)d_port;
            f->proto = (uint8_t)p;
            f->l3 = d.l3[i];
            if (d.l2_multicast[i])
                f->b_group = 1;
            else if (d_hi == 0 && (d_lo >> 32) == 0xFFFFull)
                f->b_group = (d_lo & 0xFFFFFFFFull) >= 0xE0000000ull;
            else
                f->b_group = (d_hi >> 56) == 0xFFull;
            f->first_ts = ts;
            f->last_ts = ts;
            f->first_file = (int32_t)file_index;
            f->first_frame = frame[i];
            f->pkts_ab = f->pkts_ba = f->bytes_ab = f->bytes_ba = 0;
            f->flags_ab = f->flags_ba = 0;
            f->tcp = 0;
            f->pay_state_ab = f->pay_state_ba = PAY_NONE;
            f->pay_slot_ab = f->pay_slot_ba = -1;
            f->pay_len_ab = f->pay_len_ba = 0;
        } else {
            f = &flows[row];
        }

        pkt_row[i] = row;
        pkt_fwd[i] = (uint8_t)forward;
        if (forward) {
            f->pkts_ab += 1;
            f->bytes_ab += length;
            f->flags_ab |= (uint8_t)flags;
        } else {
            f->pkts_ba += 1;
            f->bytes_ba += length;
            f->flags_ba |= (uint8_t)flags;
        }
        if (ts < f->first_ts)
            f->first_ts = ts;
        if (ts > f->last_ts)
            f->last_ts = ts;
        f->last_file = (int32_t)file_index;
        f->last_frame = frame[i];

        if (p == IPPROTO_TCP_) {
            if (forward && (f->tcp & BASE_A) == 0) {
                f->tcp |= BASE_A;
                f->base_seq_ab = seq;
            } else if (!forward && (f->tcp & BASE_B) == 0) {
                f->tcp |= BASE_B;
                f->base_seq_ba = seq;
            }
            int64_t syn_ack = flags & (TCP_SYN | TCP_ACK);
            if (syn_ack == TCP_SYN) {
                f->tcp |= forward ? SYN_A : SYN_B;
            } else if (syn_ack == (TCP_SYN | TCP_ACK)) {
                f->tcp |= forward ? SYNACK_A : SYNACK_B;
            } else if (flags & TCP_ACK) {
                if ((forward && (f->tcp & SYN_A) && (f->tcp & SYNACK_B))
                    || (!forward && (f->tcp & SYN_B) && (f->tcp & SYNACK_A)))
                    f->tcp |= HANDSHAKE;
            }
            if (flags & TCP_FIN)
                f->tcp |= forward ? FIN_A : FIN_B;
            if (flags & TCP_RST)
                f->tcp |= RST_SEEN;
        }

        if (max_payload > 0) {
            int state = forward ? f->pay_state_ab : f->pay_state_ba;
            int64_t claimed = d.payload_len[i];
            int64_t captured = d.payload_cap[i];
            if (state != PAY_DONE) {
                int accept = 0;
                int64_t skip = 0;
                if (p == IPPROTO_TCP_) {
                    int64_t syn = (flags & TCP_SYN) ? 1 : 0;
                    uint32_t following = (uint32_t)(seq + (uint32_t)(claimed + syn));
                    int advance;
                    if (state == PAY_NONE) {
                        accept = claimed > 0;
                        state = PAY_OPEN;
                        advance = 1;
                    } else {
                        uint32_t expected = forward ? f->next_seq_ab : f->next_seq_ba;
                        int32_t gap = (int32_t)(uint32_t)(seq - expected);
                        accept = gap == 0 && claimed > 0;
                        advance = gap == 0;
                        if (gap < 0 && -(int64_t)gap < claimed) {
                            skip = -(int64_t)gap;
                            accept = advance = 1;
                        } else if (gap > 0) {
                            state = PAY_DONE;
                        }
                    }
                    if (advance) {
                        if (forward)
                            f->next_seq_ab = following;
                        else
                            f->next_seq_ba = following;
                    }
                } else if (state == PAY_NONE && claimed > 0) {
                    accept = 1;
                }
                if (accept && captured <= skip) {
                    state = PAY_DONE;
                } else if (accept) {
                    int32_t slot_id = forward ? f->pay_slot_ab : f->pay_slot_ba;
                    if (slot_id < 0) {
                        slot_id = (int32_t)n_slots;
                        n_slots++;
                        if (forward)
                            f->pay_slot_ab = slot_id;
                        else
                            f->pay_slot_ba = slot_id;
                    }
                    int64_t have = forward ? f->pay_len_ab : f->pay_len_ba;
                    int64_t take_n = captured - skip;
                    if (max_payload - have < take_n)
                        take_n = max_payload - have;
                    int64_t base = d.payload_off[i] + skip;
                    if (base < 0 || base > buflen)
                        take_n = 0;
                    else if (base + take_n > buflen)
                        take_n = buflen - base;
                    if (take_n > 0 && have >= 0 && slot_id < arena_rows)
                        memcpy(arena + (int64_t)slot_id * max_payload + have, buf + base, (size_t)take_n);
                    if (take_n > 0)
                        have += take_n;
                    if (forward)
                        f->pay_len_ab = (int32_t)have;
                    else
                        f->pay_len_ba = (int32_t)have;
                    if (have >= max_payload || captured < claimed)
                        state = PAY_DONE;
                    else if (p != IPPROTO_TCP_)
                        state = PAY_DONE;
                }
                if (forward)
                    f->pay_state_ab = (uint8_t)state;
                else
                    f->pay_state_ba = (uint8_t)state;
            }
        }

        if (d.frag[i] == FRAG_FIRST) {
            uint64_t key = (uint64_t)d.frag_id[i] | ((uint64_t)p << 32);
            uint64_t fslot = mix(s_lo ^ (d_lo << 1) ^ mix(s_hi ^ d_hi) ^ key) & (FRAG_CACHE - 1);
            uint64_t *k = &frag_keys[fslot * 5];
            k[0] = s_hi;
            k[1] = s_lo;
            k[2] = d_hi;
            k[3] = d_lo;
            k[4] = key;
            frag_rows[fslot] = row;
        }
    }
    Py_END_ALLOW_THREADS
    release_all(&bufs);
    return Py_BuildValue("LLLi", (long long)i, (long long)n_flows, (long long)n_slots, status);
}

/* ---------------------------------------------------------------- module */

static const struct {
    const char *name;
    size_t offset;
} FLOW_FIELDS[] = {
    {"a_hi", offsetof(Flow, a_hi)},
    {"a_lo", offsetof(Flow, a_lo)},
    {"b_hi", offsetof(Flow, b_hi)},
    {"b_lo", offsetof(Flow, b_lo)},
    {"a_port", offsetof(Flow, a_port)},
    {"b_port", offsetof(Flow, b_port)},
    {"proto", offsetof(Flow, proto)},
    {"l3", offsetof(Flow, l3)},
    {"b_group", offsetof(Flow, b_group)},
    {"first_ts", offsetof(Flow, first_ts)},
    {"last_ts", offsetof(Flow, last_ts)},
    {"first_file", offsetof(Flow, first_file)},
    {"last_file", offsetof(Flow, last_file)},
    {"first_frame", offsetof(Flow, first_frame)},
    {"last_frame", offsetof(Flow, last_frame)},
    {"pkts_ab", offsetof(Flow, pkts_ab)},
    {"pkts_ba", offsetof(Flow, pkts_ba)},
    {"bytes_ab", offsetof(Flow, bytes_ab)},
    {"bytes_ba", offsetof(Flow, bytes_ba)},
    {"flags_ab", offsetof(Flow, flags_ab)},
    {"flags_ba", offsetof(Flow, flags_ba)},
    {"tcp", offsetof(Flow, tcp)},
    {"base_seq_ab", offsetof(Flow, base_seq_ab)},
    {"base_seq_ba", offsetof(Flow, base_seq_ba)},
    {"next_seq_ab", offsetof(Flow, next_seq_ab)},
    {"next_seq_ba", offsetof(Flow, next_seq_ba)},
    {"pay_state_ab", offsetof(Flow, pay_state_ab)},
    {"pay_state_ba", offsetof(Flow, pay_state_ba)},
    {"pay_slot_ab", offsetof(Flow, pay_slot_ab)},
    {"pay_slot_ba", offsetof(Flow, pay_slot_ba)},
    {"pay_len_ab", offsetof(Flow, pay_len_ab)},
    {"pay_len_ba", offsetof(Flow, pay_len_ba)},
};

static PyObject *k_flow_layout(PyObject *self, PyObject *noargs)
{
    PyObject *layout = PyDict_New();
    if (layout == NULL)
        return NULL;
    PyObject *size = PyLong_FromSize_t(sizeof(Flow));
    if (size == NULL || PyDict_SetItemString(layout, "itemsize", size) < 0) {
        Py_XDECREF(size);
        Py_DECREF(layout);
        return NULL;
    }
    Py_DECREF(size);
    for (size_t k = 0; k < sizeof(FLOW_FIELDS) / sizeof(FLOW_FIELDS[0]); k++) {
        PyObject *at = PyLong_FromSize_t(FLOW_FIELDS[k].offset);
        if (at == NULL || PyDict_SetItemString(layout, FLOW_FIELDS[k].name, at) < 0) {
            Py_XDECREF(at);
            Py_DECREF(layout);
            return NULL;
        }
        Py_DECREF(at);
    }
    return layout;
}

static PyMethodDef methods[] = {
    {"walk_pcap", k_walk_pcap, METH_VARARGS, "See flowaudit.capture.walk.walk_pcap."},
    {"walk_pcapng", k_walk_pcapng, METH_VARARGS, "See flowaudit.capture.walk.walk_pcapng."},
    {"decode_records", k_decode_records, METH_VARARGS, "See flowaudit.capture.decode."},
    {"rebuild_table", k_rebuild_table, METH_VARARGS, "See flowaudit.flow_kernel."},
    {"update_flows", k_update_flows, METH_VARARGS, "See flowaudit.flow_kernel."},
    {"flow_layout", k_flow_layout, METH_NOARGS, "Offsets of the Flow struct's fields."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "flowaudit._kernels",
                                    "flowaudit's compiled kernels (see _kernels.c).", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
