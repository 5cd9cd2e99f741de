"""One module per application: what a batch is, which networks, and the D and G losses."""
