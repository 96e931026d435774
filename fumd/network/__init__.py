"""The spiking network: state, construction, LIF dynamics and event-driven simulation."""
