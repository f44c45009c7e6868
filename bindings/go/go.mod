module winattn.dev/winattn

go 1.19
