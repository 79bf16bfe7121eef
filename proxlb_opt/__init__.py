"""proxlb-opt: an optimization-based rebalancer for Proxmox VE clusters."""

__version__ = "0.1.0"
