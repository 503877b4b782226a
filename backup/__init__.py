"""diskbackup: serverless backups of Azure managed disks on Durable Functions."""

__version__ = "0.1.0"
