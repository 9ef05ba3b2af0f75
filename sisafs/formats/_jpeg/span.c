/*
 * Span helpers of the selective JPEG encoder (sisafs/formats/jpeg_selective.py),
 * included by entropy.c.
 *
 * Why C: a 12 MP photo has hundreds of re-encoded spans holding up to a few hundred
 * thousand blocks. Gathering those blocks from the coefficient arrays with numpy fancy
 * indexing, scattering them back and splicing the new bits between the neighbouring
 * bytes with Python integers cost about 0.1 core-second per photo; these walk the MCUs
 * once and copy at memcpy speed.
 *
 * Every length and index is checked: the geometry comes from the file (hostile), and a
 * mismatch raises ValueError rather than touching memory outside the buffers.
 */

typedef struct {
    int h, v;
    Py_ssize_t rows, cols;
    Py_buffer buf;
} mcomp;

/*
 * copy_mcus(comps, mcus_x, m0, m1, blocks, to_comps) -> number of blocks
 *
 * comps: per scan component (h, v, rows, cols, int16 array of rows x cols x 64).
 * blocks: int16 (n, 64) in coding order: for each MCU m0..m1-1, each component's v x h
 * blocks row by row (jpeg_structure.mcu_blocks' order). to_comps false copies from the
 * component arrays into `blocks`, true copies `blocks` back into them.
 */
static PyObject *copy_mcus(PyObject *self, PyObject *args)
{
    PyObject *comps;
    Py_ssize_t mcus_x, m0, m1;
    Py_buffer blocks;
    int to_comps;
    if (!PyArg_ParseTuple(args, "Onnnw*p", &comps, &mcus_x, &m0, &m1, &blocks, &to_comps))
        return NULL;
    PyObject *result = NULL;
    mcomp mc[MAXC];
    int ncomp = 0, nbuf = 0;
    const char *err = NULL;
    Py_ssize_t per = 0, max_rows = PY_SSIZE_T_MAX;
    if (!PyTuple_Check(comps) || PyTuple_GET_SIZE(comps) < 1 ||
        PyTuple_GET_SIZE(comps) > MAXC || mcus_x < 1 || m0 < 0 || m1 < m0) {
        err = "bad arguments";
        goto done;
    }
    ncomp = (int)PyTuple_GET_SIZE(comps);
    for (int j = 0; j < ncomp; j++) {
        PyObject *c = PyTuple_GET_ITEM(comps, j);
        if (!PyTuple_Check(c)) { err = "bad arguments"; goto done; }
        if (!PyArg_ParseTuple(c, to_comps ? "iinnw*" : "iinny*", &mc[j].h, &mc[j].v,
                              &mc[j].rows, &mc[j].cols, &mc[j].buf))
            goto done;
        nbuf++;
        /* rows * cols * 128 <= buffer length, computed without overflow */
        if (mc[j].h < 1 || mc[j].h > 4 || mc[j].v < 1 || mc[j].v > 4 || mc[j].rows < 0 ||
            mc[j].cols / mc[j].h < mcus_x || mc[j].cols > mc[j].buf.len / 128 ||
            mc[j].rows > mc[j].buf.len / 128 / mc[j].cols) {
            err = "bad component geometry";
            goto done;
        }
        per += mc[j].h * mc[j].v;
        if (mc[j].rows / mc[j].v < max_rows) max_rows = mc[j].rows / mc[j].v;
    }
    /* every MCU row touched must exist in every component; then (m1 - m0) * per * 128
     * is bounded by the component buffers' sizes and cannot overflow */
    if (m1 > m0 && (m1 - 1) / mcus_x >= max_rows) { err = "MCU out of range"; goto done; }
    Py_ssize_t n = (m1 - m0) * per;
    if (blocks.len / 128 < n) { err = "block buffer too small"; goto done; }
    Py_BEGIN_ALLOW_THREADS
    int16_t *b = (int16_t *)blocks.buf;
    for (Py_ssize_t m = m0; m < m1; m++) {
        Py_ssize_t my = m / mcus_x, mx = m % mcus_x;
        for (int j = 0; j < ncomp; j++) {
            int16_t *base = (int16_t *)mc[j].buf.buf;
            for (int bv = 0; bv < mc[j].v; bv++) {
                int16_t *row = base + ((my * mc[j].v + bv) * mc[j].cols + mx * mc[j].h) * 64;
                size_t len = (size_t)mc[j].h * 128;
                if (to_comps) memcpy(row, b, len);
                else memcpy(b, row, len);
                b += mc[j].h * 64;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(n);
done:
    if (err && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, err);
    for (int j = 0; j < nbuf; j++) PyBuffer_Release(&mc[j].buf);
    PyBuffer_Release(&blocks);
    return result;
}

/* Bits [from, from + n) of `src` (most significant first) appended to w. */
static int bw_copy(bwriter *w, const uint8_t *src, int64_t from, int64_t n)
{
    int64_t i = from, end = from + n;
    while (i < end && (i & 7)) {
        if (bw_put(w, (src[i >> 3] >> (7 - (i & 7))) & 1, 1) < 0) return -1;
        i++;
    }
    for (; i + 8 <= end; i += 8)
        if (bw_put(w, src[i >> 3], 8) < 0) return -1;
    for (; i < end; i++)
        if (bw_put(w, (src[i >> 3] >> (7 - (i & 7))) & 1, 1) < 0) return -1;
    return 0;
}

/*
 * span_bytes(data, start_bit, pieces, end_bit) -> bytes
 *
 * The public bytes of a re-encoded span: the bits of data's byte at start_bit that
 * precede it (they belong to the MCU before the span), then each (bits, nbits) piece of
 * new entropy-coded bits in turn, then either (end_bit >= 0) the bits of data's byte at
 * end_bit from there on, or (end_bit < 0, the span reaches a marker) one-bits to the
 * next byte boundary; every 0xFF byte stuffed with a 0x00. ValueError unless the bits
 * come to whole bytes.
 */
static PyObject *span_bytes(PyObject *self, PyObject *args)
{
    Py_buffer data;
    long long start_bit, end_bit;
    PyObject *pieces;
    if (!PyArg_ParseTuple(args, "y*LOL", &data, &start_bit, &pieces, &end_bit)) return NULL;
    PyObject *result = NULL;
    bwriter w = {0};
    const char *err = NULL;
    const uint8_t *d = data.buf;
    if (!PyTuple_Check(pieces) || start_bit < 0 || (start_bit >> 3) >= data.len ||
        (end_bit >= 0 && (end_bit & 7) && (end_bit >> 3) >= data.len)) {
        err = "bad arguments";
        goto done;
    }
    if (start_bit & 7 && bw_put(&w, d[start_bit >> 3] >> (8 - (start_bit & 7)),
                                (int)(start_bit & 7)) < 0)
        goto nomem;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pieces); i++) {
        Py_buffer bits;
        long long nbits;
        PyObject *p = PyTuple_GET_ITEM(pieces, i);
        if (!PyTuple_Check(p)) { err = "bad arguments"; goto done; }
        if (!PyArg_ParseTuple(p, "y*L", &bits, &nbits)) goto done;
        int rc = 0;
        if (nbits < 0 || nbits > (long long)bits.len * 8) err = "bad arguments";
        else rc = bw_copy(&w, bits.buf, 0, nbits);
        PyBuffer_Release(&bits);
        if (err) goto done;
        if (rc < 0) goto nomem;
    }
    if (end_bit < 0) {
        if (w.nacc && bw_put(&w, (1u << (8 - w.nacc)) - 1, 8 - w.nacc) < 0) goto nomem;
    } else if (end_bit & 7) {
        int keep = 8 - (int)(end_bit & 7);
        if (bw_put(&w, d[end_bit >> 3] & ((1u << keep) - 1), keep) < 0) goto nomem;
    }
    if (w.nacc) { err = "span bit length mismatch"; goto done; }
    Py_ssize_t ff = 0;
    for (Py_ssize_t i = 0; i < w.nbytes; i++) ff += w.buf[i] == 0xFF;
    result = PyBytes_FromStringAndSize(NULL, w.nbytes + ff);
    if (!result) goto done;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < w.nbytes; i++) {
        *o++ = w.buf[i];
        if (w.buf[i] == 0xFF) *o++ = 0;
    }
    goto done;
nomem:
    PyErr_NoMemory();
done:
    if (err && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, err);
    PyMem_Free(w.buf);
    PyBuffer_Release(&data);
    return result;
}
