"""Build hook: the wheel carries MODEL_CARD.md, which maintainers edit at the repository's root, as package data.

Only the standard wheel gets the copy: an editable install reads the root's file directly (``finsent.hub.card``), and a
copy in site-packages would make a bare ``finsent/`` folder there that imports as an empty namespace package.
"""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CardTemplateHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name == "wheel" and version == "standard":
            build_data["force_include"]["MODEL_CARD.md"] = "finsent/resources/MODEL_CARD.md"
