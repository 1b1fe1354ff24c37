"""Tasks: each is one module with how to build its model, its loss, its metrics and how to
predict.  The Trainer and the CLI know tasks only through that interface."""
