"""Networks only (nn.Modules), one family per file."""
