// Forwards every record unchanged: the SDK's floor (batch decoding and encoding) in Go.
package main

import "sluice.dev/sdk/sluice"

type identity struct{}

func (identity) Transform(r *sluice.Record, out *sluice.Emitter) error {
	out.Forward(r)
	return nil
}

func init() {
	sluice.Register(func(sluice.Config) (sluice.Transform, error) { return identity{}, nil })
}

func main() {}
