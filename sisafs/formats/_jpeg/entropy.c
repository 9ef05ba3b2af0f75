/*
 * sisafs.formats._jpegcodec: Huffman entropy decoder/encoder for sequential JPEG scans.
 *
 * Why C: decoding a 12 MP scan in Python takes seconds; here it takes tens of ms.
 * Why so small: the selective codec never re-encodes unchanged data. It decodes a scan
 * once (coefficients plus the exact bit position of every MCU), re-encodes only the short
 * spans it alters, and the restore splices original bytes back. So no byte-exact
 * re-encoder of whole scans is needed, only a strict decoder and a span encoder.
 *
 * Every input is hostile: all reads are bounds-checked, tables are validated, and any
 * inconsistency raises ValueError instead of guessing (libjpeg would guess; the caller
 * then takes the fallback path, which is always safe).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LOOKBITS 9

typedef struct {
    /* decoding */
    int32_t maxcode[18];
    int32_t valoffset[18];
    uint8_t lut_len[1 << LOOKBITS];
    uint8_t lut_sym[1 << LOOKBITS];
    /* AC tables: a code and its value bits that fit in LOOKBITS together, decoded in
       one lookup (length 0: take the slow path). Most AC terms of a photo are short. */
    uint8_t fast_len[1 << LOOKBITS];
    uint8_t fast_run[1 << LOOKBITS];
    int16_t fast_val[1 << LOOKBITS];
    uint8_t huffval[256];
    /* encoding */
    uint16_t ehufco[256];
    uint8_t ehufsi[256];
    int valid;
} htable;

/* Build both directions of a table from a DHT body of `len` bytes (16 counts +
   symbols). 0, or -1 with ValueError set. */
static int build_table_raw(const uint8_t *p, Py_ssize_t len, htable *t, int is_dc)
{
    memset(t, 0, sizeof(*t));
    int err = 0;
    if (len < 16) err = 1;
    int total = 0;
    if (!err) {
        for (int i = 0; i < 16; i++) total += p[i];
        if (total > 256 || len < 16 + total) err = 1;
    }
    if (!err) {
        uint8_t huffsize[257];
        uint32_t huffcode[257];
        int k = 0;
        for (int l = 1; l <= 16; l++)
            for (int i = 0; i < p[l - 1]; i++) huffsize[k++] = (uint8_t)l;
        huffsize[k] = 0;
        uint32_t code = 0;
        int si = huffsize[0];
        k = 0;
        while (huffsize[k]) {
            while (huffsize[k] == si) { huffcode[k++] = code++; }
            if (code >= (1u << si)) { err = 1; break; }
            code <<= 1;
            si++;
        }
        if (!err) {
            memcpy(t->huffval, p + 16, (size_t)total);
            k = 0;
            for (int l = 1; l <= 16; l++) {
                if (p[l - 1]) {
                    t->valoffset[l] = k - (int32_t)huffcode[k];
                    k += p[l - 1];
                    t->maxcode[l] = (int32_t)huffcode[k - 1];
                } else {
                    t->maxcode[l] = -1;
                }
            }
            t->maxcode[17] = 0x7FFFFFFF;
            k = 0;
            for (int l = 1; l <= LOOKBITS; l++) {
                for (int i = 0; i < p[l - 1]; i++, k++) {
                    int lookbits = (int)(huffcode[k] << (LOOKBITS - l));
                    for (int c = 0; c < (1 << (LOOKBITS - l)); c++) {
                        t->lut_len[lookbits + c] = (uint8_t)l;
                        t->lut_sym[lookbits + c] = p[16 + k];
                    }
                }
            }
            for (int look = 0; !is_dc && look < (1 << LOOKBITS); look++) {
                int l = t->lut_len[look], sz = t->lut_sym[look] & 15;
                if (!l || !sz || l + sz > LOOKBITS) continue;
                uint32_t v = ((uint32_t)look >> (LOOKBITS - l - sz)) & ((1u << sz) - 1);
                t->fast_len[look] = (uint8_t)(l + sz);
                t->fast_run[look] = (uint8_t)(t->lut_sym[look] >> 4);
                t->fast_val[look] = (int16_t)(v < (1u << (sz - 1)) ? (int)v - (int)((1u << sz) - 1)
                                                                   : (int)v);
            }
            for (k = 0; k < total; k++) {
                uint8_t sym = p[16 + k];
                int maxsym = is_dc ? 15 : 255;
                if (sym > maxsym || t->ehufsi[sym]) { err = 1; break; }
                t->ehufco[sym] = (uint16_t)huffcode[k];
                t->ehufsi[sym] = huffsize[k];
            }
            t->valid = 1;
        }
    }
    if (err) {
        PyErr_SetString(PyExc_ValueError, "invalid Huffman table");
        return -1;
    }
    return 0;
}

/* build_table_raw from a bytes-like DHT body; None leaves the table empty (invalid). */
static int build_table(PyObject *obj, htable *t, int is_dc)
{
    memset(t, 0, sizeof(*t));
    if (obj == Py_None) return 0;
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
    int rc = build_table_raw((const uint8_t *)b.buf, b.len, t, is_dc);
    PyBuffer_Release(&b);
    return rc;
}

/* ---------------------------------------------------------------- bit reader */

typedef struct {
    const uint8_t *d;
    Py_ssize_t len, pos, marker;
    uint64_t buf;
    int nbits, zeros;
    Py_ssize_t ring[8];
    unsigned nload;
} breader;

static void br_reset(breader *r, Py_ssize_t pos)
{
    r->pos = pos;
    r->marker = -1;
    r->buf = 0;
    r->nbits = 0;
    r->zeros = 0;
    r->nload = 0;
}

static void br_fill(breader *r)
{
    while (r->nbits <= 56) {
        if (r->marker < 0) {
            if (r->pos >= r->len) {
                r->marker = r->len;
            } else if (r->d[r->pos] == 0xFF) {
                if (r->pos + 1 < r->len && r->d[r->pos + 1] == 0x00) {
                    r->ring[r->nload++ & 7] = r->pos;
                    r->buf = (r->buf << 8) | 0xFF;
                    r->nbits += 8;
                    r->pos += 2;
                    continue;
                }
                r->marker = r->pos;
            } else {
                r->ring[r->nload++ & 7] = r->pos;
                r->buf = (r->buf << 8) | r->d[r->pos];
                r->nbits += 8;
                r->pos += 1;
                continue;
            }
        }
        /* past a marker: feed zero bits, counted so overruns are detected */
        r->buf <<= 8;
        r->nbits += 8;
        r->zeros += 8;
    }
}

static inline uint32_t br_peek(breader *r, int n)
{
    if (r->nbits < n) br_fill(r);
    return (uint32_t)((r->buf >> (r->nbits - n)) & ((1ull << n) - 1));
}

static inline void br_skip(breader *r, int n) { r->nbits -= n; }

static inline int br_overrun(const breader *r) { return r->nbits < r->zeros; }

/* Position of the next unread bit as byte offset * 8 + bits already used in that byte. */
static int64_t br_tell(const breader *r)
{
    int real = r->nbits - r->zeros;
    if (real <= 0) {
        if (r->marker >= 0) return (int64_t)r->marker * 8;
        return (int64_t)r->pos * 8;
    }
    int back = (real + 7) / 8;
    Py_ssize_t off = r->ring[(r->nload - (unsigned)back) & 7];
    return (int64_t)off * 8 + (back * 8 - real);
}

static inline int decode_sym(breader *r, const htable *t)
{
    uint32_t look = br_peek(r, LOOKBITS);
    int l = t->lut_len[look];
    if (l) {
        br_skip(r, l);
        return t->lut_sym[look];
    }
    uint32_t code = br_peek(r, 16);
    for (l = LOOKBITS + 1; l <= 16; l++) {
        int32_t c = (int32_t)(code >> (16 - l));
        if (t->maxcode[l] >= 0 && c <= t->maxcode[l]) {
            int idx = t->valoffset[l] + c;
            if (idx < 0 || idx > 255) return -1;
            br_skip(r, l);
            return t->huffval[idx];
        }
    }
    return -1;
}

static inline int extend(uint32_t v, int s)
{
    return (v < (1u << (s - 1))) ? (int)v - (int)((1u << s) - 1) : (int)v;
}

static inline int getval(breader *r, int s)
{
    if (!s) return 0;
    uint32_t v = br_peek(r, s);
    br_skip(r, s);
    return extend(v, s);
}

/* Find the next marker at or after pos (skipping garbage); returns its offset or -1. */
static Py_ssize_t next_marker(const uint8_t *d, Py_ssize_t len, Py_ssize_t pos)
{
    while (pos + 1 < len) {
        if (d[pos] == 0xFF && d[pos + 1] != 0x00) return pos;
        pos++;
    }
    return -1;
}

/* Decode one block into blk (64 coefficients, zigzag order); NULL or what is wrong. */
static inline const char *decode_block(breader *r, const htable *dct, const htable *act, int *pred,
                                int16_t *blk)
{
    memset(blk, 0, 128);
    int s = decode_sym(r, dct);
    if (s < 0 || s > 11) return "bad DC code";
    int p = *pred + getval(r, s);
    if (p < -32767 || p > 32767) return "DC out of range";
    *pred = p;
    blk[0] = (int16_t)p;
    for (int k = 1; k < 64;) {
        uint32_t look = br_peek(r, LOOKBITS);
        int fl = act->fast_len[look];
        if (fl) {  /* same bits, same checks as the slow path below */
            k += act->fast_run[look];
            if (k > 63) return "bad AC coefficient";
            br_skip(r, fl);
            blk[k++] = act->fast_val[look];
            continue;
        }
        int rs = decode_sym(r, act);
        if (rs < 0) return "bad AC code";
        int run = rs >> 4, sz = rs & 15;
        if (sz) {
            k += run;
            if (k > 63 || sz > 10) return "bad AC coefficient";
            blk[k++] = (int16_t)getval(r, sz);
        } else if (run == 15) {
            k += 16;
            if (k > 64) return "bad zero run";
        } else {
            break;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- decode_scan */

#define MAXC 4

typedef struct {
    int h, v, dc, ac;
    Py_ssize_t rows, stride;
    Py_buffer out;
} scomp;

/* The 4 DC and 4 AC tables a scan may use, from two 4-tuples of DHT bodies (or None):
   [0..3] DC, [4..7] AC. NULL with a Python error set on failure; PyMem_Free it. */
static htable *scan_tables(PyObject *dcs, PyObject *acs)
{
    htable *tabs = PyMem_Calloc(8, sizeof(htable));
    if (!tabs) { PyErr_NoMemory(); return NULL; }
    for (int i = 0; i < 4; i++) {
        if (build_table(PyTuple_GET_ITEM(dcs, i), &tabs[i], 1) < 0 ||
            build_table(PyTuple_GET_ITEM(acs, i), &tabs[4 + i], 0) < 0) {
            PyMem_Free(tabs);
            return NULL;
        }
    }
    return tabs;
}

/* Whether a parsed scan component is usable: sampling factors, table ids that name
   defined tables, a row stride for the MCU width and an output buffer that holds it. */
static int component_ok(const scomp *c, const htable *tabs, Py_ssize_t mcus_x)
{
    return c->h >= 1 && c->h <= 4 && c->v >= 1 && c->v <= 4 && c->dc >= 0 && c->dc <= 3 &&
           c->ac >= 0 && c->ac <= 3 && tabs[c->dc].valid && tabs[4 + c->ac].valid &&
           c->stride >= mcus_x * c->h &&
           c->out.len >= (Py_ssize_t)(c->rows * c->stride * 64 * 2);
}

/* Type checks shared by the scan entry points: two 4-tuples of tables and a tuple of
   components. 0, or -1 with a TypeError set. */
static int scan_args_ok(PyObject *dcs, PyObject *acs, PyObject *comps)
{
    if (!PyTuple_Check(dcs) || !PyTuple_Check(acs) || PyTuple_GET_SIZE(dcs) != 4 ||
        PyTuple_GET_SIZE(acs) != 4 || !PyTuple_Check(comps)) {
        PyErr_SetString(PyExc_TypeError, "bad arguments");
        return -1;
    }
    return 0;
}

/* Parse the first `ncomp` components (h, v, dc id, ac id, rows, stride, buffer; `fmt`
   says whether the buffer is written) into `sc`, counting acquired buffers in *nbuf.
   0 when all are usable, -1 with a Python error set, -2 for an unusable component. */
static int scan_components(PyObject *comps, int ncomp, const char *fmt, scomp *sc,
                           int *nbuf, const htable *tabs, Py_ssize_t mcus_x)
{
    for (int j = 0; j < ncomp; j++) {
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(comps, j), fmt, &sc[j].h, &sc[j].v,
                              &sc[j].dc, &sc[j].ac, &sc[j].rows, &sc[j].stride, &sc[j].out))
            return -1;
        (*nbuf)++;
        if (!component_ok(&sc[j], tabs, mcus_x))
            return -2;
    }
    return 0;
}

static PyObject *decode_scan(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t start, mcus_x, mcus_y, restart;
    PyObject *dcs, *acs, *comps;
    if (!PyArg_ParseTuple(args, "y*nOOOnnn", &data, &start, &dcs, &acs, &comps, &mcus_x,
                          &mcus_y, &restart))
        return NULL;
    PyObject *result = NULL, *pos_obj = NULL, *pred_obj = NULL, *ends_obj = NULL;
    htable *tabs = NULL;
    scomp sc[MAXC];
    int ncomp = 0, nbuf = 0;
    const char *err = NULL;

    if (scan_args_ok(dcs, acs, comps) < 0) goto done;
    ncomp = (int)PyTuple_GET_SIZE(comps);
    if (ncomp < 1 || ncomp > MAXC || mcus_x < 1 || mcus_y < 1 || restart < 0 ||
        mcus_x > 65536 || mcus_y > 65536 || start < 0 || start > data.len) {
        err = "bad scan geometry";
        goto done;
    }
    tabs = scan_tables(dcs, acs);
    if (!tabs) goto done;
    int rc = scan_components(comps, ncomp, "iiiinnw*", sc, &nbuf, tabs, mcus_x);
    if (rc == -1) goto done;
    int blocks_per_mcu = 0;
    for (int j = 0; j < ncomp && !rc; j++) {
        if (sc[j].rows < mcus_y * sc[j].v) rc = -2;
        blocks_per_mcu += sc[j].h * sc[j].v;
    }
    if (rc) { err = "bad scan component"; goto done; }
    if (blocks_per_mcu > 10) { err = "too many blocks per MCU"; goto done; }

    Py_ssize_t nmcu = mcus_x * mcus_y;
    Py_ssize_t per = restart ? restart : nmcu;
    Py_ssize_t nint = (nmcu + per - 1) / per;
    pos_obj = PyBytes_FromStringAndSize(NULL, nmcu * 8);
    pred_obj = PyBytes_FromStringAndSize(NULL, nmcu * 4 * 4);
    ends_obj = PyBytes_FromStringAndSize(NULL, nint * 8);
    if (!pos_obj || !pred_obj || !ends_obj) goto done;
    int64_t *mpos = (int64_t *)PyBytes_AS_STRING(pos_obj);
    int32_t *mpred = (int32_t *)PyBytes_AS_STRING(pred_obj);
    int64_t *iend = (int64_t *)PyBytes_AS_STRING(ends_obj);
    memset(mpred, 0, (size_t)nmcu * 16);

    breader r;
    r.d = (const uint8_t *)data.buf;
    r.len = data.len;
    br_reset(&r, start);
    int pred[MAXC] = {0};
    Py_ssize_t scan_end = -1;

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t m = 0; m < nmcu && !err; m++) {
        if (m % per == 0 && m) {
            pred[0] = pred[1] = pred[2] = pred[3] = 0;
        }
        mpos[m] = br_tell(&r);
        for (int j = 0; j < ncomp; j++) mpred[m * 4 + j] = pred[j];
        Py_ssize_t my = m / mcus_x, mx = m % mcus_x;
        for (int j = 0; j < ncomp && !err; j++) {
            const htable *dct = &tabs[sc[j].dc], *act = &tabs[4 + sc[j].ac];
            for (int bv = 0; bv < sc[j].v && !err; bv++) {
                for (int bh = 0; bh < sc[j].h && !err; bh++) {
                    Py_ssize_t br_ = my * sc[j].v + bv, bc = mx * sc[j].h + bh;
                    int16_t *blk = (int16_t *)sc[j].out.buf + (br_ * sc[j].stride + bc) * 64;
                    err = decode_block(&r, dct, act, &pred[j], blk);
                }
            }
        }
        if (!err && br_overrun(&r)) err = "entropy data truncated";
        if (err) break;
        if ((m + 1) % per == 0 || m + 1 == nmcu) {
            /* end of a restart interval: skip padding, find the marker */
            int64_t t = br_tell(&r);
            Py_ssize_t off = (Py_ssize_t)(t >> 3);
            if (t & 7) {
                off += (r.d[off] == 0xFF) ? 2 : 1;
            }
            Py_ssize_t mk = next_marker(r.d, r.len, off);
            if (mk < 0) { err = "entropy data truncated"; break; }
            Py_ssize_t iv = m / per;
            iend[iv] = mk;
            if (m + 1 == nmcu) {
                scan_end = mk;
                break;
            }
            Py_ssize_t q = mk;
            while (q + 1 < r.len && r.d[q + 1] == 0xFF) q++;
            if (q + 1 >= r.len || r.d[q + 1] != (uint8_t)(0xD0 + (iv & 7))) {
                err = "missing or misnumbered restart marker";
                break;
            }
            br_reset(&r, q + 2);
        }
    }
    Py_END_ALLOW_THREADS

    if (err) goto done;
    result = Py_BuildValue("nOOO", scan_end, pos_obj, pred_obj, ends_obj);
done:
    if (err && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, err);
    for (int j = 0; j < nbuf; j++) PyBuffer_Release(&sc[j].out);
    PyMem_Free(tabs);
    Py_XDECREF(pos_obj);
    Py_XDECREF(pred_obj);
    Py_XDECREF(ends_obj);
    PyBuffer_Release(&data);
    return result;
}

/* ---------------------------------------------------------------- check_mcus */

/*
 * The protect-time check of re-encoded spans (sisafs/formats/jpeg_check.py): for each
 * job, decode MCUs m0.. of the scan from bit position `bitpos` with DC predictors
 * p0..p3, and require every block to equal the intended coefficients (the `comps`
 * buffers, laid out as decode_scan writes them). A job stops at the first MCU boundary
 * past m0 whose bit position is at least `stop_bits` (the caller passes the end of the
 * new bytes: from there on the file holds original bytes), or at m_end (the end of the
 * restart interval or scan). Its result row says where the decoder stands: (MCU, bit
 * position, byte after the padding or -1, p0..p3); the caller checks that this is
 * exactly where the original's decoder stood, so the rest decodes as the original did.
 * Jobs and results are int64 rows of 8: (bitpos, m0, m_end, stop_bits, p0..p3) and
 * (mcu, bitpos, padded_end, p0..p3, 0).
 */
static PyObject *check_mcus(PyObject *self, PyObject *args)
{
    Py_buffer data, jobs, res;
    PyObject *dcs, *acs, *comps;
    Py_ssize_t mcus_x;
    if (!PyArg_ParseTuple(args, "y*OOOny*w*", &data, &dcs, &acs, &comps, &mcus_x, &jobs,
                          &res))
        return NULL;
    PyObject *result = NULL;
    htable *tabs = NULL;
    scomp sc[MAXC];
    int ncomp = 0, nbuf = 0;
    const char *err = NULL;
    Py_ssize_t bad = -1;
    Py_ssize_t njobs = jobs.len / 64;

    if (scan_args_ok(dcs, acs, comps) < 0) goto done;
    ncomp = (int)PyTuple_GET_SIZE(comps);
    if (ncomp < 1 || ncomp > MAXC || mcus_x < 1 || jobs.len % 64 || res.len < jobs.len) {
        err = "bad arguments";
        goto done;
    }
    tabs = scan_tables(dcs, acs);
    if (!tabs) goto done;
    int rc = scan_components(comps, ncomp, "iiiinny*", sc, &nbuf, tabs, mcus_x);
    if (rc == -1) goto done;
    if (rc) { err = "bad scan component"; goto done; }
    Py_ssize_t max_rows = 1 << 30;
    for (int j = 0; j < ncomp; j++)
        if (sc[j].rows / sc[j].v < max_rows) max_rows = sc[j].rows / sc[j].v;

    const int64_t *job = (const int64_t *)jobs.buf;
    int64_t *out = (int64_t *)res.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t q = 0; q < njobs && !err; q++, job += 8, out += 8) {
        int64_t bitpos = job[0], stop_bits = job[3];
        Py_ssize_t m0 = (Py_ssize_t)job[1], m_end = (Py_ssize_t)job[2];
        int pred[MAXC] = {(int)job[4], (int)job[5], (int)job[6], (int)job[7]};
        if (m0 < 0 || m_end <= m0 || (m_end - 1) / mcus_x >= max_rows || bitpos < 0 ||
            (bitpos >> 3) >= data.len) {
            err = "bad span geometry";
            break;
        }
        breader r;
        r.d = (const uint8_t *)data.buf;
        r.len = data.len;
        br_reset(&r, (Py_ssize_t)(bitpos >> 3));
        if (bitpos & 7) {
            br_fill(&r);
            br_skip(&r, (int)(bitpos & 7));
        }
        Py_ssize_t m = m0, pad_end = -1;
        int64_t t = 0;
        int16_t blk[64];
        for (; m < m_end; m++) {
            t = br_tell(&r);
            if (m > m0 && t >= stop_bits) break;
            Py_ssize_t my = m / mcus_x, mx = m % mcus_x;
            for (int j = 0; j < ncomp && !err; j++) {
                const htable *dct = &tabs[sc[j].dc], *act = &tabs[4 + sc[j].ac];
                for (int bv = 0; bv < sc[j].v && !err; bv++) {
                    for (int bh = 0; bh < sc[j].h && !err; bh++) {
                        Py_ssize_t br_ = my * sc[j].v + bv, bc = mx * sc[j].h + bh;
                        const int16_t *want =
                            (const int16_t *)sc[j].out.buf + (br_ * sc[j].stride + bc) * 64;
                        err = decode_block(&r, dct, act, &pred[j], blk);
                        if (!err && memcmp(blk, want, 128)) {
                            err = "public scan does not decode as intended";
                            bad = m;
                        }
                    }
                }
            }
            if (!err && br_overrun(&r)) err = "entropy data truncated";
            if (err) break;
        }
        if (err) break;
        if (m == m_end) {
            t = br_tell(&r);
            pad_end = (Py_ssize_t)(t >> 3);
            if (t & 7) pad_end += (r.d[pad_end] == 0xFF) ? 2 : 1;
        }
        out[0] = m;
        out[1] = t;
        out[2] = pad_end;
        for (int j = 0; j < MAXC; j++) out[3 + j] = j < ncomp ? pred[j] : 0;
        out[7] = 0;
    }
    Py_END_ALLOW_THREADS

    if (err) {
        if (bad >= 0) PyErr_Format(PyExc_ValueError, "%s (MCU %zd)", err, bad);
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    if (err && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, err);
    for (int j = 0; j < nbuf; j++) PyBuffer_Release(&sc[j].out);
    PyMem_Free(tabs);
    PyBuffer_Release(&data);
    PyBuffer_Release(&jobs);
    PyBuffer_Release(&res);
    return result;
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    uint8_t *buf;
    Py_ssize_t cap, nbytes;
    uint64_t acc; /* the last nacc (< 8) bits written, not yet a whole byte */
    int nacc;
    int64_t nbits;
} bwriter;

/* Append the low `size` bits of `code`, most significant first (size <= 24): at most
 * three whole bytes, so one capacity check a call. */
static inline int bw_put(bwriter *w, uint32_t code, int size)
{
    if (size <= 0) return 0;
    if (w->cap - w->nbytes < 4) {
        Py_ssize_t ncap = w->cap ? w->cap * 2 : 256;
        uint8_t *nb = PyMem_Realloc(w->buf, (size_t)ncap);
        if (!nb) return -1;
        w->buf = nb;
        w->cap = ncap;
    }
    w->acc = (w->acc << size) | (code & ((1u << size) - 1));
    w->nacc += size;
    w->nbits += size;
    while (w->nacc >= 8) {
        w->nacc -= 8;
        w->buf[w->nbytes++] = (uint8_t)(w->acc >> w->nacc);
    }
    w->acc &= (1u << w->nacc) - 1;
    return 0;
}

static inline int category(int v)
{
    if (v < 0) v = -v;
#if defined(__GNUC__)
    return v ? 32 - __builtin_clz((unsigned)v) : 0;
#else
    int s = 0;
    while (v) { s++; v >>= 1; }
    return s;
#endif
}

static inline uint32_t valbits(int v, int s) { return (uint32_t)(v < 0 ? v + (1 << s) - 1 : v); }

/* Nearest DC difference whose category has a code in the table; -1 << 20 if none. */
static int legal_dc(const htable *t, int diff)
{
    int best = 1 << 20, bestd = 1 << 30;
    for (int s = 0; s <= 11; s++) {
        if (!t->ehufsi[s]) continue;
        int cands[4];
        int n = 0;
        if (s == 0) { cands[n++] = 0; }
        else {
            int lo = 1 << (s - 1), hi = (1 << s) - 1;
            int a = diff < lo ? lo : (diff > hi ? hi : diff);
            int b = -diff < lo ? lo : (-diff > hi ? hi : -diff);
            cands[n++] = a;
            cands[n++] = -b;
        }
        for (int i = 0; i < n; i++) {
            int d = cands[i] - diff;
            if (d < 0) d = -d;
            if (d < bestd) { bestd = d; best = cands[i]; }
        }
    }
    return best;
}

/* Index of the last non-zero AC term (0 if none): altered blocks are mostly flat, and
 * the zeros after it cost nothing but the EOB, so the loops below stop there. */
static inline int last_nonzero(const int16_t *blk)
{
    int w = 15; /* four coefficients at a time, from the end */
    uint64_t q;
    for (; w > 0; w--) {
        memcpy(&q, blk + 4 * w, 8);
        if (q) break;
    }
    int k = 4 * w + 3;
    while (k > 0 && !blk[k]) k--;
    return k;
}

/* Make a block encodable with the table's symbols by shrinking or dropping AC values. */
static int legalize_ac(const htable *t, int16_t *blk)
{
    int run = 0, last = last_nonzero(blk);
    for (int k = 1; k <= last; k++) {
        int v = blk[k];
        if (!v) { run++; continue; }
        if (v > 1023) v = 1023;
        if (v < -1023) v = -1023;
        if (run > 15 && !t->ehufsi[0xF0]) {
            for (int q = k; q < 64; q++) blk[q] = 0;
            break;
        }
        int r = run & 15, s = category(v);
        while (s > 0 && !t->ehufsi[(r << 4) | s]) s--;
        if (!s) { blk[k] = 0; run++; continue; }
        int mag = (1 << s) - 1;
        int a = v < 0 ? -v : v;
        if (a > mag) a = mag;
        blk[k] = (int16_t)(v < 0 ? -a : a);
        run = 0;
    }
    return 0;
}

/* Encode one block; fixed blocks must already be encodable. Returns -1 on a missing code. */
static int encode_block(bwriter *w, const htable *dct, const htable *act, int16_t *blk,
                        int *pred, int fixed, int count_only, int64_t *bits)
{
    int diff = blk[0] - *pred;
    int s = category(diff);
    if (s > 11 || !dct->ehufsi[s]) {
        if (fixed) return -1;
        int d = legal_dc(dct, diff);
        if (d == (1 << 20)) return -1;
        int nv = *pred + d;
        if (nv < -32767 || nv > 32767) return -1;
        blk[0] = (int16_t)nv;
        diff = d;
        s = category(diff);
    }
    if (!fixed) legalize_ac(act, blk);
    int64_t n = dct->ehufsi[s] + s;
    if (!count_only && (bw_put(w, dct->ehufco[s], dct->ehufsi[s]) < 0 ||
                        bw_put(w, valbits(diff, s), s) < 0)) return -2;
    *pred = blk[0];
    int run = 0, last = last_nonzero(blk);
    for (int k = 1; k <= last; k++) {
        int v = blk[k];
        if (!v) { run++; continue; }
        while (run > 15) {
            if (!act->ehufsi[0xF0]) return -1;
            n += act->ehufsi[0xF0];
            if (!count_only && bw_put(w, act->ehufco[0xF0], act->ehufsi[0xF0]) < 0) return -2;
            run -= 16;
        }
        int sz = category(v);
        int sym = (run << 4) | sz;
        if (sz > 10 || !act->ehufsi[sym]) return -1;
        n += act->ehufsi[sym] + sz;
        if (!count_only && (bw_put(w, act->ehufco[sym], act->ehufsi[sym]) < 0 ||
                            bw_put(w, valbits(v, sz), sz) < 0)) return -2;
        run = 0;
    }
    if (last < 63) {
        if (!act->ehufsi[0]) return -1;
        n += act->ehufsi[0];
        if (!count_only && bw_put(w, act->ehufco[0], act->ehufsi[0]) < 0) return -2;
    }
    *bits += n;
    return 0;
}

/* The tables encode_blocks built last, by the exact DHT body they came from: a photo
 * makes several hundred calls (two or three per re-encoded span) with the same few
 * tables, and building six tables cost more than encoding a short span. Only touched
 * with the GIL held. */
#define TCACHE 8
#define TBODY (16 + 256)
static struct {
    Py_ssize_t len; /* 0: unused */
    int is_dc;
    uint8_t body[TBODY];
    htable t;
} tcache[TCACHE];
static int tcache_next;

static int build_table_cached(PyObject *obj, htable *t, int is_dc)
{
    if (obj == Py_None) return build_table(obj, t, is_dc);
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
    Py_ssize_t len = b.len;
    if (len <= 0 || len > TBODY) {
        int rc = build_table_raw((const uint8_t *)b.buf, len, t, is_dc);
        PyBuffer_Release(&b);
        return rc;
    }
    uint8_t body[TBODY]; /* a snapshot: the table is built from exactly the key */
    memcpy(body, b.buf, (size_t)len);
    PyBuffer_Release(&b);
    for (int i = 0; i < TCACHE; i++) {
        if (tcache[i].len == len && tcache[i].is_dc == is_dc &&
            !memcmp(tcache[i].body, body, (size_t)len)) {
            memcpy(t, &tcache[i].t, sizeof(*t));
            return 0;
        }
    }
    if (build_table_raw(body, len, t, is_dc) < 0) return -1;
    int i = tcache_next;
    tcache_next = (tcache_next + 1) % TCACHE;
    tcache[i].len = len;
    tcache[i].is_dc = is_dc;
    memcpy(tcache[i].body, body, (size_t)len);
    memcpy(&tcache[i].t, t, sizeof(*t));
    return 0;
}

static PyObject *encode_blocks(PyObject *self, PyObject *args)
{
    Py_buffer coefs, slots, fixed;
    PyObject *dcs, *acs, *preds_in;
    if (!PyArg_ParseTuple(args, "w*y*y*OOO", &coefs, &slots, &fixed, &dcs, &acs, &preds_in))
        return NULL;
    PyObject *result = NULL;
    htable *tabs = NULL;
    bwriter w = {0};
    const char *err = NULL;
    Py_ssize_t n = slots.len;
    int ns = 0, pred[MAXC] = {0};
    if (!PyTuple_Check(dcs) || !PyTuple_Check(acs) || !PyTuple_Check(preds_in) ||
        coefs.len < n * 128 || fixed.len < n) {
        err = "bad arguments";
        goto done;
    }
    ns = (int)PyTuple_GET_SIZE(dcs);
    if (ns < 1 || ns > MAXC || PyTuple_GET_SIZE(acs) != ns || PyTuple_GET_SIZE(preds_in) != ns) {
        err = "bad arguments";
        goto done;
    }
    tabs = PyMem_Calloc(2 * MAXC, sizeof(htable));
    if (!tabs) { PyErr_NoMemory(); goto done; }
    for (int j = 0; j < ns; j++) {
        if (build_table_cached(PyTuple_GET_ITEM(dcs, j), &tabs[j], 1) < 0) goto done;
        if (build_table_cached(PyTuple_GET_ITEM(acs, j), &tabs[MAXC + j], 0) < 0) goto done;
        if (!tabs[j].valid || !tabs[MAXC + j].valid) { err = "missing table"; goto done; }
        pred[j] = (int)PyLong_AsLong(PyTuple_GET_ITEM(preds_in, j));
        if (PyErr_Occurred()) goto done;
    }
    int64_t nbits = 0;
    const uint8_t *sl = slots.buf, *fx = fixed.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int j = sl[i];
        if (j >= ns) { err = "bad slot"; goto done; }
        int16_t *blk = (int16_t *)coefs.buf + i * 64;
        int rc = encode_block(&w, &tabs[j], &tabs[MAXC + j], blk, &pred[j], fx[i], 0, &nbits);
        if (rc == -2) { PyErr_NoMemory(); goto done; }
        if (rc < 0) {
            PyErr_Format(PyExc_LookupError, "block %zd cannot be coded with this table", i);
            goto done;
        }
    }
    Py_ssize_t nb = w.nbytes + (w.nacc ? 1 : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, nb);
    if (!out) goto done;
    if (w.nbytes) memcpy(PyBytes_AS_STRING(out), w.buf, (size_t)w.nbytes);
    if (w.nacc) PyBytes_AS_STRING(out)[w.nbytes] = (char)(uint8_t)(w.acc << (8 - w.nacc));
    result = Py_BuildValue("NL", out, (long long)nbits);
done:
    if (err && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, err);
    PyMem_Free(w.buf);
    PyMem_Free(tabs);
    PyBuffer_Release(&coefs);
    PyBuffer_Release(&slots);
    PyBuffer_Release(&fixed);
    return result;
}

static PyObject *block_bits(PyObject *self, PyObject *args)
{
    Py_buffer coef;
    PyObject *dc, *ac;
    if (!PyArg_ParseTuple(args, "y*OO", &coef, &dc, &ac)) return NULL;
    PyObject *result = NULL;
    htable *tabs = PyMem_Calloc(2, sizeof(htable));
    if (!tabs) { PyErr_NoMemory(); goto done; }
    if (coef.len < 128) { PyErr_SetString(PyExc_ValueError, "need 64 int16"); goto done; }
    if (build_table(dc, &tabs[0], 1) < 0 || build_table(ac, &tabs[1], 0) < 0) goto done;
    if (!tabs[0].valid || !tabs[1].valid) {
        PyErr_SetString(PyExc_ValueError, "missing table");
        goto done;
    }
    int16_t blk[64];
    memcpy(blk, coef.buf, 128);
    /* AC part only (the DC difference depends on the neighbours): code any DC the
     * table has and subtract its cost. */
    int s = 0;
    while (s <= 11 && !tabs[0].ehufsi[s]) s++;
    int rc = -1;
    int64_t nbits = 0;
    if (s <= 11) {
        int pred = 0;
        blk[0] = (int16_t)(s ? 1 << (s - 1) : 0);
        rc = encode_block(NULL, &tabs[0], &tabs[1], blk, &pred, 1, 1, &nbits);
        nbits -= tabs[0].ehufsi[s] + s;
    }
    result = PyLong_FromLongLong(rc < 0 ? -1 : (long long)nbits);
done:
    PyMem_Free(tabs);
    PyBuffer_Release(&coef);
    return result;
}

#include "span.c"

static PyMethodDef methods[] = {
    {"decode_scan", decode_scan, METH_VARARGS,
     "decode_scan(data, start, dc_tables, ac_tables, comps, mcus_x, mcus_y, restart)\n"
     "-> (scan_end, mcu_bitpos int64[], mcu_preds int32[n*4], interval_ends int64[])"},
    {"check_mcus", check_mcus, METH_VARARGS,
     "check_mcus(data, dc_tables, ac_tables, comps, mcus_x, jobs int64[n*8],\n"
     "           results int64[n*8]) -> None (ValueError if a span decodes otherwise)"},
    {"encode_blocks", encode_blocks, METH_VARARGS,
     "encode_blocks(coefs, slots, fixed, dc_tables, ac_tables, preds) -> (bits, nbits)"},
    {"block_bits", block_bits, METH_VARARGS,
     "block_bits(coef64, dc_table, ac_table) -> bits of the AC part, or -1 if not codable"},
    {"copy_mcus", copy_mcus, METH_VARARGS,
     "copy_mcus(comps, mcus_x, m0, m1, blocks, to_comps) -> blocks copied\n"
     "comps: per scan component (h, v, rows, cols, int16 array rows x cols x 64)"},
    {"span_bytes", span_bytes, METH_VARARGS,
     "span_bytes(data, start_bit, ((bits, nbits), ...), end_bit) -> stuffed span bytes"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_jpegcodec",
    .m_doc = "Huffman entropy codec for sequential JPEG scans.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__jpegcodec(void) { return PyModule_Create(&moddef); }
