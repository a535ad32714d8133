"""Stand-ins for the services aperture talks to (tailscaled, ...), for tests."""
