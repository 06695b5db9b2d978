module fc-init.example/go-function

go 1.19
