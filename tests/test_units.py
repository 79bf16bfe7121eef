import pytest

from proxlb_opt.units import format_mib, parse_cores_milli, parse_size_mib


@pytest.mark.parametrize("value, mib", [
    ("512M", 512), ("8G", 8192), ("8GiB", 8192), ("1.5T", 1572864), ("8g", 8192), (1073741824, 1024),
    ("2048", 0), ("1K", 0), (0, 0), ("0.5G", 512),
])
def test_sizes(value, mib):
    assert parse_size_mib(value, "f") == mib


@pytest.mark.parametrize("value", ["-1G", "eight", None, True, [1], "1X", float("nan"), -5])
def test_bad_sizes_name_the_field(value):
    with pytest.raises(ValueError, match="memory"):
        parse_size_mib(value, "memory")


def test_cores():
    assert parse_cores_milli(1.25, "cpus") == 1250
    assert parse_cores_milli("4", "cpus") == 4000
    with pytest.raises(ValueError, match="cpus"):
        parse_cores_milli(-1, "cpus")


def test_format():
    assert format_mib(512) == "512 MiB"
    assert format_mib(1536) == "1.5 GiB"
