/* The C part's functions that the ring extension calls, declared once.
 *
 * _build_ring.py reads this file into the cffi cdef (cffi checks the definitions in its
 * C_SOURCE against these prototypes when it compiles _ring_cffi); _ringext.c includes it,
 * with tu_ring and tu_pbuf as opaque types, and calls the functions through pointers of
 * these types that bind() receives from the cffi module.  Plain prototypes only: cffi's
 * parser reads no other preprocessor lines. */
long long tu_prep(tu_ring *r, unsigned char opcode, unsigned char sqe_flags,
                  int fd, unsigned long long off, const void *addr,
                  unsigned len, unsigned op_flags, unsigned long long user_data,
                  unsigned short buf_index, unsigned file_index, unsigned short ioprio);
int tu_nop_if_unsubmitted(tu_ring *r, long long position, unsigned long long user_data);
void tu_pbuf_give(tu_pbuf *pb, unsigned short bid);
