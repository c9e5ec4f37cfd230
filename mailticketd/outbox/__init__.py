"""The outbox's far side: the delivery worker and the transports it sends through."""
