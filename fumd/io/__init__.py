"""The input/output queue: the watched inbox, input-file readers, results in the outbox."""
