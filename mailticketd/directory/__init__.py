"""Organisations, users, roles and VMs, and the policy questions asked of them."""
