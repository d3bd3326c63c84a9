"""Local fake servers for external services. Each speaks the service's published protocol
over real HTTP on 127.0.0.1, so the adapters under test use their real clients."""
