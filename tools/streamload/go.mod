module streamload

go 1.22
