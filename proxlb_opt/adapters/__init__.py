"""Adapters to the outside world: only proxmox.py talks to Proxmox VE."""
