package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("go server as uid %d\n", os.Getuid())
}
