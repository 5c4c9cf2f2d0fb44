/*
 * main.c - the layering check's program (tests/layering/meson.build): it does
 * nothing; what matters is that it links with one layer's library whole and
 * only the layers below it.
 */
int main(void)
{
    return 0;
}
