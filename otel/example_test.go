package pypoolotel_test

import (
	"context"
	"log"

	"github.com/pypool/pypool"
	pypoolotel "github.com/pypool/pypool/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// A pool whose calls become spans of the application's TracerProvider
// (here one without exporter; use yours, or otel.GetTracerProvider()).
func ExampleNewTracer() {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())

	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module: "my_module",
		Tracer: pypoolotel.NewTracer(tp),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	ctx, span := tp.Tracer("my-service").Start(ctx, "handle request")
	defer span.End()
	out, err := pool.Call(ctx, "duplicate_text", "testing") // a child span "pypool.call duplicate_text"
	if err != nil {
		log.Fatal(err)
	}
	log.Println(out)
}
