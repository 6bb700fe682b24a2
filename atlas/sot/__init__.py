"""NetBox, the source of truth: typed reads of sites and racks, idempotent writes, topology import."""
