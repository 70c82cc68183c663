"""
Benchmarks of the WhatsInfinity provider, run by ``make bench`` (never by pytest).

Each benchmark measures the provider side by side with a reference (bare httpx, the http and slack
providers, the bound the rate windows allow), prints a table with the target beside the figures, and
writes ``bench/results/<name>.json``. ``python -m bench --help`` lists them.
"""
