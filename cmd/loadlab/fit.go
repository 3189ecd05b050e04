package main

import (
	"context"
	"errors"
	"io"
)

func runFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("fit: not implemented yet")
}
