"""The redemption catalog admins keep in `data/` (item, points cost, stock), checked with file and line."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot import YamlError, load_yaml, pydantic_error_to_yaml_error


class CatalogItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    cost: int = Field(ge=0, le=1_000_000_000)
    stock: int = Field(ge=0, le=1_000_000_000)
    """Total ever available (across all rooms); what was redeemed is counted in the database."""
    note: str = ""

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CatalogItem] = []

    def find(self, name: str) -> CatalogItem | None:
        wanted = name.strip().casefold()
        return next((item for item in self.items if item.name.casefold() == wanted), None)


def load_catalog(path: Path) -> Catalog:
    """Read the catalog; a missing file is an empty catalog, a broken one a YamlError with the line."""
    if not path.exists():
        return Catalog()
    if not path.resolve().is_relative_to(path.parent.resolve()):  # item names are posted: no server files
        raise YamlError(str(path), None, "积分商城文件是指向其文件夹之外的符号链接，不能使用")
    doc = load_yaml(path)
    try:
        catalog = Catalog.model_validate(doc.data or {})
    except ValidationError as err:
        raise pydantic_error_to_yaml_error(doc, err, model=Catalog) from None
    seen: dict[str, int] = {}
    for index, item in enumerate(catalog.items):
        if item.name.casefold() in seen:
            raise YamlError(doc.file, doc.line("items", index, "name"),
                            f"商品「{item.name}」重复（第 {seen[item.name.casefold()] + 1} 项已有）")
        seen[item.name.casefold()] = index
    return catalog
