"""Learning rules applied every cycle: STDP, eligibility traces, reward modulation, intrinsic plasticity."""
