"""Reading IIS-style XML files safely (defusedxml) into elements that know their line."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import DefusedXMLParser  # type: ignore[import-untyped]

from corral.config.errors import Problems
from corral.config.model import Location


@dataclass(frozen=True, slots=True)
class Element:
    tag: str
    attrs: dict[str, str]
    children: tuple[Element, ...]
    location: Location

    def find(self, tag: str) -> Element | None:
        for child in self.children:
            if child.tag == tag:
                return child
        return None

    def find_all(self, tag: str) -> tuple[Element, ...]:
        return tuple(child for child in self.children if child.tag == tag)


class _LineBuilder(ET.TreeBuilder):
    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[int, int] = {}
        self.parser: DefusedXMLParser | None = None

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        element = super().start(tag, attrs)
        if self.parser is not None:
            self.lines[id(element)] = self.parser.parser.CurrentLineNumber
        return element


def parse_xml(data: bytes, file: str, problems: Problems) -> Element | None:
    """The document's root element, or None after adding the syntax error to `problems`.

    Entity declarations (the "billion laughs" family) and external entities are refused.
    """
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder)
    builder.parser = parser
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as error:
        line = error.position[0] if error.position else 0
        message = str(error).split(": line ")[0]
        problems.add(Location(file, line), "xml", f"malformed XML: {message}")
        return None
    except DefusedXmlException as error:
        line = parser.parser.CurrentLineNumber
        problems.add(
            Location(file, line),
            "xml",
            f"entity declarations are refused ({type(error).__name__})",
        )
        return None

    def convert(element: ET.Element) -> Element:
        return Element(
            tag=element.tag,
            attrs=dict(element.attrib),
            children=tuple(convert(child) for child in element),
            location=Location(file, builder.lines.get(id(element), 0)),
        )

    return convert(root)
