/* mat5.h — a forward-only, streaming reader of MATLAB level-5 MAT files (the
 * MathWorks "MAT-File Format" document): the 128-byte header, then top-level
 * variables stored plain or zlib-compressed, in either byte order. One
 * variable is open at a time; every declared size is checked against the
 * bytes that must hold it before anything is read or allocated. Internal. */
#ifndef FEWMUL_MAT5_H
#define FEWMUL_MAT5_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Data types of element tags (Table 1-1 of the format document). */
enum mat5_type {
    MAT5_INT8 = 1,
    MAT5_UINT8 = 2,
    MAT5_INT16 = 3,
    MAT5_UINT16 = 4,
    MAT5_INT32 = 5,
    MAT5_UINT32 = 6,
    MAT5_SINGLE = 7,
    MAT5_DOUBLE = 9,
    MAT5_INT64 = 12,
    MAT5_UINT64 = 13,
    MAT5_MATRIX = 14,
    MAT5_COMPRESSED = 15,
    MAT5_UTF8 = 16,
    MAT5_UTF16 = 17,
    MAT5_UTF32 = 18
};

/* Array classes of the array-flags subelement. */
enum mat5_class {
    MAT5_CLASS_CELL = 1,
    MAT5_CLASS_STRUCT = 2,
    MAT5_CLASS_OBJECT = 3,
    MAT5_CLASS_CHAR = 4,
    MAT5_CLASS_SPARSE = 5,
    MAT5_CLASS_DOUBLE = 6,
    MAT5_CLASS_SINGLE = 7,
    MAT5_CLASS_INT8 = 8,
    MAT5_CLASS_UINT8 = 9,
    MAT5_CLASS_INT16 = 10,
    MAT5_CLASS_UINT16 = 11,
    MAT5_CLASS_INT32 = 12,
    MAT5_CLASS_UINT32 = 13,
    MAT5_CLASS_INT64 = 14,
    MAT5_CLASS_UINT64 = 15
};

/* MATLAB itself allows 63-character names; numpy caps arrays at 32 dims. */
#define MAT5_MAX_NAME 63
#define MAT5_MAX_DIMS 32

/* The header of one top-level variable, as fmi_mat5_next reads it. */
typedef struct mat5_var {
    int klass;         /* enum mat5_class; 0 for an empty miMATRIX element */
    int complex, logical;
    int ndims;
    uint32_t dims[MAT5_MAX_DIMS];
    uint64_t numel;    /* product of dims, saturating at UINT64_MAX */
    char name[MAT5_MAX_NAME + 1]; /* "" when longer than MAT5_MAX_NAME */
    int compressed;
    uint64_t offset;   /* file offset of the variable's top-level tag */
} mat5_var;

typedef struct mat5_file {
    const char *path;
    int fd;
    int big;               /* file written big-endian ("MI") */
    uint64_t size;         /* bytes in the file */
    uint64_t pos;          /* file offset of the next unconsumed byte */
    uint8_t *buf;          /* read-ahead of the file */
    size_t off, len;       /* unconsumed bytes are buf[off .. len) */
    /* the open variable */
    int open;
    mat5_var var;
    uint64_t elem_left;    /* bytes of its miMATRIX contents not yet read */
    uint64_t next;         /* file offset where the next top-level tag starts */
    int in_z;              /* contents come out of zlib */
    z_stream zs;
    int zs_ready;
    uint64_t z_left;       /* compressed bytes not yet consumed by zlib */
    uint64_t z_inflated;   /* bytes zlib has produced */
    uint64_t z_declared;   /* bytes the inner miMATRIX element says it has, tag included */
    int z_end;             /* zlib reported the end of the stream */
    /* the open data subelement */
    uint64_t sub_left;
    uint32_t sub_pad;      /* padding after it, already clipped to elem_left */
    int sub_sde;           /* small data element: data in sde[] */
    uint8_t sde[4];
    uint32_t sde_off;
} mat5_file;

/* Opens path and checks the 128-byte header. FM_ENOENT, FM_EIO, FM_ETRUNC,
 * FM_EFORMAT (not a level-5 MAT file), FM_EUNSUPPORTED (v7.3, HDF5). */
int fmi_mat5_open(mat5_file *f, const char *path);
void fmi_mat5_close(mat5_file *f);

/* Ends the open variable, if any, and reads the next top-level variable's
 * array flags, dimensions and name. Returns 1 with *var filled, 0 at the end
 * of the file, or a negative FM_E* code. */
int fmi_mat5_next(mat5_file *f, mat5_var *var);

/* Starts the open variable's real part: its data type and element count. The
 * byte count must fit the variable and be a whole number of elements of a
 * numeric type (miINT8 .. miUINT64, miSINGLE, miDOUBLE). */
int fmi_mat5_data_begin(mat5_file *f, int *type, uint64_t *count);
/* Reads the next n bytes of the real part (n at most what is left of it). */
int fmi_mat5_data_read(mat5_file *f, void *buf, size_t n);

/* Ends the open variable. verify = 1 inflates what is left of a compressed
 * one and requires the zlib stream to end exactly with it (checksum
 * included); verify = 0 skips its compressed bytes unread. */
int fmi_mat5_end(mat5_file *f, int verify);

/* Bytes per element of a numeric data type; 0 for any other type. */
size_t fmi_mat5_type_size(int type);
const char *fmi_mat5_type_name(int type);
const char *fmi_mat5_class_name(int klass);
/* The value of one element of numeric type `type` stored at p in the file's
 * byte order. Integers beyond 2^53 round, which no label comes near. */
double fmi_mat5_value(const mat5_file *f, int type, const uint8_t *p);

#endif
