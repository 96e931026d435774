"""Operations: metrics, logging, sd_notify, status file."""
