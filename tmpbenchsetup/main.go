package main

import (
	"context"
	"os"
	"strings"

	"github.com/batchpipe/batchpipe/internal/kafkareal"
)

func main() {
	for _, t := range strings.Split(os.Args[2], ",") {
		if err := kafkareal.CreateTopic(context.Background(), os.Args[1], t, 4); err != nil {
			panic(err)
		}
	}
}
