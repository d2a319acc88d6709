"""Where clusters come from besides `clusters:`: the fleet's inventory, read again every `discovery.refresh`.

    kubeconfig.py    one cluster per context of a kubeconfig file (globs to include/exclude)
    argocd.py        Argo CD cluster secrets (label argocd.argoproj.io/secret-type=cluster) in the management
                     cluster: `name`, `server`, `config` JSON (bearerToken, tlsClientConfig, execProviderConfig)
    cluster_api.py   Cluster API's `<cluster>-kubeconfig` secrets (key `value`)
    template.py      a discovered cluster's config: the inventory's template, its name, how to reach it
    runner.py        static + discovered clusters -> Collector.reconfigure: they start, change and stop live

An inventory returns what it found: clusters, and problems (a malformed secret, an unsupported auth kind)
each naming its object. A problem never stops the others: it is shown in `/status`, `observe check` and
`observe_discovery_problems`, and logged once.
"""

from observe.discovery.model import Found, Problem

__all__ = ["Found", "Problem"]
