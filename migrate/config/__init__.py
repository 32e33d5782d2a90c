"""The validated wave spec and the inventory view: `spec` (the pydantic models and the order of
a wave's systems), `inventory` (`load`: YAML and Ansible inventory, cross-checks) and `network`
(which addresses may be contacted). Pure apart from reading the inventory's two files.
"""

from migrate.config.inventory import HOSTS_FILE, SPEC_FILE, Host, Inventory, load
from migrate.config.network import Resolver, address_refusal
from migrate.config.spec import (
    AppHosts,
    Archive,
    Database,
    DbRef,
    DbServer,
    DnsRecord,
    EntryPoint,
    RehearsalRule,
    Slot,
    Spec,
    Storage,
    System,
    Target,
    Transfer,
    Wave,
    Window,
    order_systems,
)

__all__ = [
    "HOSTS_FILE", "SPEC_FILE", "Host", "Inventory", "load", "Resolver", "address_refusal",
    "AppHosts", "Archive", "Database", "DbRef", "DbServer", "DnsRecord", "EntryPoint", "RehearsalRule",
    "Slot", "Spec", "Storage", "System", "Target", "Transfer", "Wave", "Window", "order_systems",
]
