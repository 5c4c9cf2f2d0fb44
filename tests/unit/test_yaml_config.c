#include "t.h"
static void placeholder(void) { CHECK(1); }
int main(void) { RUN(placeholder); DONE(); }
