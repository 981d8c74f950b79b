"""Words for people reading the output."""


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """"1 face", "0 faces", "68 faces"."""
    return f"{n} {noun if n == 1 else plural_form or noun + 's'}"
