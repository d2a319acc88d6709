"""Analyses of what the collector shipped, read back with pandas: the fleet's answers, not its plumbing.

    sources.py   reading the centre (the Prometheus HTTP query API) or the embedded store into raw
                 instant vectors, one `Inputs`
    failover.py  N-1 failover capacity, with the generated alert's arithmetic: `failover_report`
    render.py    a report as a rich table, CSV or JSON
    plot.py      a report as a PNG (matplotlib, the `analysis` extra)

`observe report failover` (observe/cli.py) puts them together. pandas and matplotlib are the `analysis`
extra: nothing in the collector imports this package.
"""
