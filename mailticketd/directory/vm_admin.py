"""The VM inventory part of the staff operations: add one VM, import a CSV, all or nothing."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime

from mailticketd.config import Config
from mailticketd.directory.errors import AdminError
from mailticketd.directory.models import Organisation, Vm
from mailticketd.storage import Store

_CSV_HEADER = (("name", "organisation"), ("name", "organization"))


@dataclass(frozen=True)
class VmImport:
    added: list[Vm]
    unchanged: list[Vm]


class VmAdmin:
    """Mixed into ``DirectoryAdmin``, which provides the store, the config, the actor, the time and look-ups."""

    store: Store
    config: Config
    actor: str
    now: datetime

    async def organisation(self, name: str) -> Organisation:
        raise NotImplementedError

    async def add_vm(self, name: str, organisation_name: str) -> Vm:
        organisation = await self.organisation(organisation_name)
        name = self._vm_name(name)
        existing = (await self.store.vms.by_names([name])).get(name)
        if existing is not None:
            raise AdminError(f"VM {name!r} is already in the inventory of {existing.organisation!r}")
        return await self._add_vm(name, organisation, "vm.add")

    async def import_vms(self, source: str, text: str) -> VmImport:
        """Add the VMs of a ``name,organisation`` CSV (header optional), all or none; listed ones stay as they are."""
        wanted: dict[str, tuple[int, Organisation]] = {}
        organisations: dict[str, Organisation] = {}
        for line, row in enumerate(csv.reader(text.splitlines()), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells) or line == 1 and tuple(cell.lower() for cell in cells) in _CSV_HEADER:
                continue
            if len(cells) != 2:
                raise AdminError(f"{source}, line {line}: expected 2 columns (name,organisation), "
                                 f"got {len(cells)}: {','.join(row)!r}")
            try:
                name = self._vm_name(cells[0])
                key = cells[1].lower()
                organisations[key] = organisations.get(key) or await self.organisation(cells[1])
            except AdminError as error:
                raise AdminError(f"{source}, line {line}: {error}") from None
            organisation = organisations[key]
            if name in wanted and wanted[name][1].id != organisation.id:
                first_line, first = wanted[name]
                raise AdminError(f"{source}, line {line}: VM {name!r} is on line {first_line} "
                                 f"for {first.name!r} and here for {organisation.name!r}")
            wanted.setdefault(name, (line, organisation))
        if not wanted:
            raise AdminError(f"{source}: no VMs in the file (expected lines name,organisation)")
        existing = await self.store.vms.by_names(wanted)
        for name, (line, organisation) in wanted.items():
            if name in existing and existing[name].organisation_id != organisation.id:
                raise AdminError(f"{source}, line {line}: VM {name!r} is already in the inventory of "
                                 f"{existing[name].organisation!r}, not {organisation.name!r}")
        added = [await self._add_vm(name, organisation, "vm.import")
                 for name, (_, organisation) in wanted.items() if name not in existing]
        return VmImport(added=added, unchanged=[existing[name] for name in wanted if name in existing])

    async def _add_vm(self, name: str, organisation: Organisation, action: str) -> Vm:
        await self.store.vms.add(name, organisation.id)
        vm = (await self.store.vms.by_names([name]))[name]
        await self.store.audit.record(at=self.now, actor=self.actor, action=action, subject=name, before=None,
                                      after={"name": vm.name, "organisation": vm.organisation})
        return vm

    def _vm_name(self, text: str) -> str:
        pattern = self.config.mail.vm_pattern
        if not pattern.fullmatch(text.strip()):
            raise AdminError(f"{text!r} is not a VM name (expected the pattern {pattern.pattern})")
        return text.strip().lower()
