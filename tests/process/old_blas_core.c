/* An LD_PRELOAD stand-in for OpenBLAS's openblas_get_corename that reports what OpenBLAS 0.3.21
 * reports on a CPU newer than it: "Prescott", unless OPENBLAS_CORETYPE names a core (which
 * OpenBLAS would then load). blas_core_process_test.sh runs logpd with it. */
#include <stdlib.h>

char* openblas_get_corename(void) {
  char* set = getenv("OPENBLAS_CORETYPE");
  return set != NULL && set[0] != '\0' ? set : (char*)"Prescott";
}
