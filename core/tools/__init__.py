"""setforge's tools: what is built on the engine for people (the command line, the plugin scaffold,
the run-file schema and reference docs, the demo, the summary and HTML report). Nothing in the
contract or the engine depends on these, except that a run renders its ``report.html`` here."""
