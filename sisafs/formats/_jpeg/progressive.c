/*
 * sisafs.formats._jpegprog: Huffman decoder and encoder for progressive JPEG scans.
 *
 * Progressive scans code bands of coefficients with end-of-band runs that span many
 * blocks, so no short byte span can be re-encoded in place as the sequential codec does.
 * Instead the selective progressive path decodes every scan to coefficients and
 * re-encodes whole scans. The encoder follows libjpeg's jcphuff.c to the bit (EOB runs
 * up to 0x7FFF, correction bits buffered up to 937 before a forced EOB run, padding with
 * one bits), which is what lets the restore re-encode the original coefficients with the
 * original Huffman tables and get the original bytes; the caller proves that at protect
 * time and falls back otherwise. A gather mode counts symbols for optimised tables.
 *
 * The table builder, bit reader and symbol decoder are the sequential codec's
 * (entropy.c, included here so both modules share one implementation).
 */
#include "entropy.c"

#define MAX_CORR_BITS 1000

typedef struct {
    int h, v;
    htable dc, ac;
    Py_ssize_t rows, stride;
    Py_buffer buf;
} pcomp;

/* ------------------------------------------------------------------ decoder */

typedef struct {
    breader r;
    int eobrun;
} pdec;

static inline uint32_t getbits(breader *r, int n)
{
    if (!n) return 0;
    uint32_t v = br_peek(r, n);
    br_skip(r, n);
    return v;
}

static int dec_block(pdec *d, pcomp *c, int16_t *blk, int Ss, int Se, int Ah, int Al,
                     int *pred)
{
    breader *r = &d->r;
    if (Ss == 0) {
        if (Ah == 0) {
            int s = decode_sym(r, &c->dc);
            if (s < 0 || s > 11) return -1;
            *pred += getval(r, s);
            if (*pred > 32767 || *pred < -32768) return -1;  /* hostile DC walk */
            blk[0] = (int16_t)(*pred * (1 << Al));
        } else if (getbits(r, 1)) {
            blk[0] |= (int16_t)(1 << Al);
        }
        return 0;
    }
    if (Ah == 0) {
        if (d->eobrun > 0) { d->eobrun--; return 0; }
        for (int k = Ss; k <= Se; k++) {
            int s = decode_sym(r, &c->ac);
            if (s < 0) return -1;
            int run = s >> 4;
            s &= 15;
            if (s) {
                k += run;
                if (k > Se) return -1;
                blk[k] = (int16_t)(getval(r, s) * (1 << Al));
            } else if (run == 15) {
                k += 15;
            } else {
                d->eobrun = (1 << run) - 1;
                if (run) d->eobrun += (int)getbits(r, run);
                break;
            }
        }
        return 0;
    }
    int p1 = 1 << Al, m1 = -(1 << Al), k = Ss;
    if (d->eobrun == 0) {
        for (; k <= Se; k++) {
            int s = decode_sym(r, &c->ac);
            if (s < 0) return -1;
            int run = s >> 4;
            s &= 15;
            if (s) {
                if (s != 1) return -1;
                s = getbits(r, 1) ? p1 : m1;
            } else if (run != 15) {
                d->eobrun = 1 << run;
                if (run) d->eobrun += (int)getbits(r, run);
                break;
            }
            do {
                int16_t *t = &blk[k];
                if (*t) {
                    if (getbits(r, 1) && (*t & p1) == 0) *t = (int16_t)(*t + (*t >= 0 ? p1 : m1));
                } else if (--run < 0) {
                    break;
                }
                k++;
            } while (k <= Se);
            if (s) {
                if (k > Se) return -1;
                blk[k] = (int16_t)s;
            }
        }
    }
    if (d->eobrun > 0) {
        for (; k <= Se; k++) {
            int16_t *t = &blk[k];
            if (*t && getbits(r, 1) && (*t & p1) == 0) *t = (int16_t)(*t + (*t >= 0 ? p1 : m1));
        }
        d->eobrun--;
    }
    return 0;
}

/* -------------------------------------------------------------- arguments */

static int parse_comps(PyObject *comps, pcomp *pc, int *n, int writable)
{
    *n = 0;
    if (!PyTuple_Check(comps) || PyTuple_GET_SIZE(comps) < 1 || PyTuple_GET_SIZE(comps) > MAXC) {
        PyErr_SetString(PyExc_ValueError, "bad scan components");
        return -1;
    }
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(comps); j++) {
        PyObject *dc, *ac;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(comps, j), writable ? "iiOOnnw*" : "iiOOnny*",
                              &pc[j].h, &pc[j].v, &dc, &ac, &pc[j].rows, &pc[j].stride,
                              &pc[j].buf))
            return -1;
        (*n)++;
        if (build_table(dc, &pc[j].dc, 1) < 0 || build_table(ac, &pc[j].ac, 0) < 0) return -1;
        if (pc[j].h < 1 || pc[j].h > 4 || pc[j].v < 1 || pc[j].v > 4 || pc[j].rows < 1 ||
            pc[j].stride < 1 || pc[j].buf.len < pc[j].rows * pc[j].stride * 128) {
            PyErr_SetString(PyExc_ValueError, "bad scan component geometry");
            return -1;
        }
    }
    return 0;
}

static void release(pcomp *pc, int n)
{
    for (int j = 0; j < n; j++) PyBuffer_Release(&pc[j].buf);
}

/* The block at MCU (y, x), component j, sub-block (by, bx); NULL if out of range. */
static int16_t *block_at(pcomp *pc, int ncomp, int j, Py_ssize_t y, Py_ssize_t x, int by, int bx)
{
    Py_ssize_t row = ncomp > 1 ? y * pc[j].v + by : y;
    Py_ssize_t col = ncomp > 1 ? x * pc[j].h + bx : x;
    if (row >= pc[j].rows || col >= pc[j].stride) return NULL;
    return (int16_t *)pc[j].buf.buf + (row * pc[j].stride + col) * 64;
}

static int check_band(int ncomp, int Ss, int Se, int Ah, int Al)
{
    if (Ss < 0 || Se > 63 || Ss > Se || Al > 13 || Ah > 13) return -1;
    if (Ss == 0 && Se != 0) return -1;
    if (Ss > 0 && ncomp != 1) return -1;
    if (Ah && Ah != Al + 1) return -1;
    return 0;
}

/* decode_prog(data, start, comps, ny, nx, Ss, Se, Ah, Al) -> end offset */
static PyObject *decode_prog(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t start, ny, nx;
    int Ss, Se, Ah, Al, ncomp = 0;
    PyObject *comps;
    pcomp pc[MAXC];
    if (!PyArg_ParseTuple(args, "y*nOnniiii", &data, &start, &comps, &ny, &nx, &Ss, &Se,
                          &Ah, &Al))
        return NULL;
    PyObject *result = NULL;
    if (parse_comps(comps, pc, &ncomp, 1) < 0) goto done;
    if (check_band(ncomp, Ss, Se, Ah, Al) < 0 || start < 0 || start > data.len || ny < 1 ||
        nx < 1) {
        PyErr_SetString(PyExc_ValueError, "bad progressive scan parameters");
        goto done;
    }
    pdec d = {.eobrun = 0};
    d.r.d = (const uint8_t *)data.buf;
    d.r.len = data.len;
    br_reset(&d.r, start);
    int pred[MAXC] = {0};
    for (Py_ssize_t y = 0; y < ny; y++) {
        for (Py_ssize_t x = 0; x < nx; x++) {
            for (int j = 0; j < ncomp; j++) {
                int nv = ncomp > 1 ? pc[j].v : 1, nh = ncomp > 1 ? pc[j].h : 1;
                for (int by = 0; by < nv; by++)
                    for (int bx = 0; bx < nh; bx++) {
                        int16_t *blk = block_at(pc, ncomp, j, y, x, by, bx);
                        if (!blk || dec_block(&d, &pc[j], blk, Ss, Se, Ah, Al, &pred[j]) < 0 ||
                            br_overrun(&d.r)) {
                            PyErr_SetString(PyExc_ValueError, "corrupt progressive scan");
                            goto done;
                        }
                    }
            }
        }
    }
    Py_ssize_t end = next_marker(d.r.d, d.r.len, (Py_ssize_t)(br_tell(&d.r) / 8));
    if (end < 0) {
        PyErr_SetString(PyExc_ValueError, "progressive scan runs past the end");
        goto done;
    }
    result = PyLong_FromSsize_t(end);
done:
    release(pc, ncomp);
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------------ encoder */

typedef struct {
    uint8_t *out;
    Py_ssize_t len, cap;
    uint64_t acc;
    int nacc;
    int gather, err;
    uint32_t *dc_counts, *ac_counts;  /* per scan component, 257 each */
    int eobrun, be;
    uint8_t corr[MAX_CORR_BITS + 64];
} penc;

static void put_byte(penc *e, uint8_t b)
{
    if (e->len + 2 > e->cap) {
        Py_ssize_t cap = e->cap ? e->cap * 2 : 65536;
        uint8_t *n = PyMem_Realloc(e->out, (size_t)cap);
        if (!n) { e->err = 1; return; }
        e->out = n;
        e->cap = cap;
    }
    e->out[e->len++] = b;
    if (b == 0xFF) e->out[e->len++] = 0;
}

static void emit_bits(penc *e, uint32_t code, int size)
{
    if (e->gather || !size) return;
    e->acc = (e->acc << size) | (code & ((1u << size) - 1));
    e->nacc += size;
    while (e->nacc >= 8) {
        put_byte(e, (uint8_t)(e->acc >> (e->nacc - 8)));
        e->nacc -= 8;
    }
}

static void emit_sym(penc *e, const htable *t, uint32_t *counts, int sym)
{
    if (e->gather) { counts[sym]++; return; }
    if (!t->ehufsi[sym]) { e->err = 2; return; }
    emit_bits(e, t->ehufco[sym], t->ehufsi[sym]);
}

static void emit_buffered(penc *e, const uint8_t *bits, int n)
{
    if (e->gather) return;
    for (int i = 0; i < n; i++) emit_bits(e, bits[i], 1);
}

static void emit_eobrun(penc *e, const htable *ac, uint32_t *counts)
{
    if (e->eobrun > 0) {
        int t = e->eobrun, nbits = 0;
        while ((t >>= 1)) nbits++;
        emit_sym(e, ac, counts, nbits << 4);
        if (nbits) emit_bits(e, (uint32_t)e->eobrun, nbits);
        e->eobrun = 0;
        emit_buffered(e, e->corr, e->be);
        e->be = 0;
    }
}

static inline int nbits_of(int v)
{
    int n = 0;
    while (v) { n++; v >>= 1; }
    return n;
}

static void enc_block(penc *e, pcomp *c, int j, const int16_t *blk, int Ss, int Se, int Ah,
                      int Al, int *pred)
{
    uint32_t *dcc = e->dc_counts + 257 * j, *acc = e->ac_counts + 257 * j;
    if (Ss == 0) {
        if (Ah == 0) {
            int v = blk[0] >> Al;  /* arithmetic shift, as libjpeg's IRIGHT_SHIFT */
            int diff = v - *pred;
            *pred = v;
            int a = diff < 0 ? -diff : diff, n = nbits_of(a);
            if (n > 11) { e->err = 3; return; }
            emit_sym(e, &c->dc, dcc, n);
            if (n) emit_bits(e, (uint32_t)(diff < 0 ? diff - 1 : diff), n);
        } else {
            emit_bits(e, (uint32_t)(blk[0] >> Al) & 1, 1);
        }
        return;
    }
    if (Ah == 0) {
        int r = 0;
        for (int k = Ss; k <= Se; k++) {
            int t = blk[k], t2;
            if (t == 0) { r++; continue; }
            if (t < 0) { t = -t; t >>= Al; t2 = ~t; } else { t >>= Al; t2 = t; }
            if (t == 0) { r++; continue; }
            if (e->eobrun > 0) emit_eobrun(e, &c->ac, acc);
            while (r > 15) { emit_sym(e, &c->ac, acc, 0xF0); r -= 16; }
            int n = nbits_of(t);
            if (n > 10) { e->err = 3; return; }
            emit_sym(e, &c->ac, acc, (r << 4) + n);
            emit_bits(e, (uint32_t)t2, n);
            r = 0;
        }
        if (r > 0) {
            e->eobrun++;
            if (e->eobrun == 0x7FFF) emit_eobrun(e, &c->ac, acc);
        }
        return;
    }
    int absv[64], eob = 0;
    for (int k = Ss; k <= Se; k++) {
        int t = blk[k];
        t = (t < 0 ? -t : t) >> Al;
        absv[k] = t;
        if (t == 1) eob = k;
    }
    int r = 0, br = 0;
    uint8_t *brb = e->corr + e->be;
    for (int k = Ss; k <= Se; k++) {
        int t = absv[k];
        if (t == 0) { r++; continue; }
        while (r > 15 && k <= eob) {
            emit_eobrun(e, &c->ac, acc);
            emit_sym(e, &c->ac, acc, 0xF0);
            r -= 16;
            emit_buffered(e, brb, br);
            brb = e->corr;
            br = 0;
        }
        if (t > 1) { brb[br++] = (uint8_t)(t & 1); continue; }
        emit_eobrun(e, &c->ac, acc);
        emit_sym(e, &c->ac, acc, (r << 4) + 1);
        emit_bits(e, blk[k] < 0 ? 0 : 1, 1);
        emit_buffered(e, brb, br);
        brb = e->corr;
        br = 0;
        r = 0;
    }
    if (r > 0 || br > 0) {
        e->eobrun++;
        e->be += br;
        if (e->eobrun == 0x7FFF || e->be > MAX_CORR_BITS - 64 + 1) emit_eobrun(e, &c->ac, acc);
    }
}

/* encode_prog(comps, ny, nx, Ss, Se, Ah, Al, gather) -> bytes, or (dc counts, ac counts)
   as bytes of uint32 [ncomp][257] when gathering */
static PyObject *encode_prog(PyObject *self, PyObject *args)
{
    Py_ssize_t ny, nx;
    int Ss, Se, Ah, Al, gather, ncomp = 0;
    PyObject *comps, *result = NULL;
    pcomp pc[MAXC];
    penc e;
    memset(&e, 0, sizeof(e));
    if (!PyArg_ParseTuple(args, "Onniiiip", &comps, &ny, &nx, &Ss, &Se, &Ah, &Al, &gather))
        return NULL;
    if (parse_comps(comps, pc, &ncomp, 0) < 0) goto done;
    if (check_band(ncomp, Ss, Se, Ah, Al) < 0 || ny < 1 || nx < 1) {
        PyErr_SetString(PyExc_ValueError, "bad progressive scan parameters");
        goto done;
    }
    e.gather = gather;
    e.dc_counts = PyMem_Calloc((size_t)ncomp * 257, sizeof(uint32_t));
    e.ac_counts = PyMem_Calloc((size_t)ncomp * 257, sizeof(uint32_t));
    if (!e.dc_counts || !e.ac_counts) { PyErr_NoMemory(); goto done; }
    int pred[MAXC] = {0};
    for (Py_ssize_t y = 0; y < ny && !e.err; y++)
        for (Py_ssize_t x = 0; x < nx && !e.err; x++)
            for (int j = 0; j < ncomp; j++) {
                int nv = ncomp > 1 ? pc[j].v : 1, nh = ncomp > 1 ? pc[j].h : 1;
                for (int by = 0; by < nv; by++)
                    for (int bx = 0; bx < nh; bx++) {
                        const int16_t *blk = block_at(pc, ncomp, j, y, x, by, bx);
                        if (!blk) { e.err = 4; break; }
                        enc_block(&e, &pc[j], j, blk, Ss, Se, Ah, Al, &pred[j]);
                    }
            }
    if (!e.err && Ss > 0) emit_eobrun(&e, &pc[0].ac, e.ac_counts);
    if (!e.err && !gather && e.nacc) emit_bits(&e, 0x7F, 8 - e.nacc);  /* pad with ones */
    if (e.err) {
        PyErr_SetString(e.err == 1 ? PyExc_MemoryError : PyExc_LookupError,
                        e.err == 2 ? "symbol missing from the Huffman table"
                                   : "coefficient out of range or bad geometry");
        goto done;
    }
    if (gather)
        result = Py_BuildValue("y#y#", (const char *)e.dc_counts,
                               (Py_ssize_t)(ncomp * 257 * 4), (const char *)e.ac_counts,
                               (Py_ssize_t)(ncomp * 257 * 4));
    else
        result = PyBytes_FromStringAndSize((const char *)e.out, e.len);
done:
    release(pc, ncomp);
    PyMem_Free(e.out);
    PyMem_Free(e.dc_counts);
    PyMem_Free(e.ac_counts);
    return result;
}

static PyMethodDef prog_methods[] = {
    {"decode_prog", decode_prog, METH_VARARGS, "Decode one progressive scan in place."},
    {"encode_prog", encode_prog, METH_VARARGS, "Encode one progressive scan (libjpeg-exact)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef prog_module = {
    PyModuleDef_HEAD_INIT, "_jpegprog",
    "Huffman codec for progressive JPEG scans.", -1, prog_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jpegprog(void) { return PyModule_Create(&prog_module); }
