/* C callers may pass any int where the API takes an enum; C++ may not form such an enum value without
   undefined behaviour, so the harness makes those calls through this C shim. */
#include <winattn/winattn.h>

const char *fuzz_status_string_int(int value) { return winattn_status_string((winattn_status)value); }
