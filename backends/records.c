/* The process backends' result records (see records.h). */
#include <string.h>

#include "backend.h"
#include "records.h"

void mh__record_put(unsigned char *buf, size_t index, size_t len)
{
    uint64_t fields[2] = {(uint64_t)index, (uint64_t)len};
    memcpy(buf, fields, sizeof fields);
}

int mh__record_get(const unsigned char *buf, size_t avail, size_t n,
                   size_t *index, size_t *len)
{
    uint64_t fields[2];
    if (avail < MH__RECORD_HEADER)
        return MH_ERANGE;
    memcpy(fields, buf, sizeof fields);
    if (fields[0] >= n || fields[1] > SIZE_MAX)
        return MH_ERANGE;
    *index = (size_t)fields[0];
    *len = (size_t)fields[1];
    return MH_OK;
}

void mh__record_stream_reset(struct mh__record_stream *s, size_t n)
{
    mh__free(s->buf);
    memset(s, 0, sizeof *s);
    s->n = n;
}

/* Append bytes to the partial record, growing by what arrived (doubling,
 * capped at the record's length). */
static int records_stream_append(struct mh__record_stream *s, const unsigned char *p,
                                 size_t take)
{
    if (s->got + take > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->got + take)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        if (cap > s->len)
            cap = s->len;
        unsigned char *grown = mh__malloc(cap);
        if (!grown)
            return MH_ENOMEM;
        if (s->got)
            memcpy(grown, s->buf, s->got);
        mh__free(s->buf);
        s->buf = grown;
        s->cap = cap;
    }
    memcpy(s->buf + s->got, p, take);
    s->got += take;
    return MH_OK;
}

int mh__record_stream_feed(struct mh__record_stream *s, const unsigned char *block,
                           size_t len, mh__record_emit emit, void *ctx)
{
    size_t pos = 0;
    int rc;
    while (pos < len) {
        if (s->partial) {
            size_t take = s->len - s->got;
            if (take > len - pos)
                take = len - pos;
            if ((rc = records_stream_append(s, block + pos, take)))
                return rc;
            pos += take;
            if (s->got < s->len)
                return MH_OK; /* the rest comes in later blocks */
            s->partial = false;
            rc = emit(s->index, s->buf, s->len, ctx);
            mh__free(s->buf);
            s->buf = NULL;
            s->cap = s->got = 0;
            if (rc)
                return rc;
            continue;
        }
        size_t index, size;
        if ((rc = mh__record_get(block + pos, len - pos, s->n, &index, &size)))
            return rc;
        if (index < s->next_min)
            return MH_ERANGE;
        s->next_min = index + 1;
        pos += MH__RECORD_HEADER;
        if (size <= len - pos) {
            if ((rc = emit(index, block + pos, size, ctx)))
                return rc;
            pos += size;
            continue;
        }
        s->partial = true;
        s->index = index;
        s->len = size;
        s->got = 0;
    }
    return MH_OK;
}
