package main

import (
	"errors"

	"sluice.dev/sdk/sluice"
)

type plugin struct {
	tag string
}

func newPlugin(config sluice.Config) (sluice.Transform, error) {
	tag, ok := config.Get("tag")
	if !ok {
		tag = "{{name}}"
	}
	sluice.Info("tagging records with `" + tag + "`")
	return &plugin{tag: tag}, nil
}

func (p *plugin) Transform(r *sluice.Record, out *sluice.Emitter) error {
	if r.Value == nil {
		return errors.New("record has no value") // to the dead-letter topic
	}
	headers := append(append([]sluice.Header{}, r.Headers...), sluice.Header{Name: "tag", Value: []byte(p.tag)})
	out.Emit(sluice.Output{Key: r.Key, Value: r.Value, Headers: headers})
	return nil
}

func init() { sluice.Register(newPlugin) }

func main() {}
