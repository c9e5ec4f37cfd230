"""Ticket numbers, subject tags, statuses and articles."""
