module frontgate/tests/bench/kcpfake

go 1.19
