"""The tegrastats parser on lines in each Jetson generation's format; energy; nvpmodel.

The lines follow the formats tegrastats prints on each module (rail names and field
order as in JetPack 4, 5, 6 and 7 logs); the numbers are illustrative, not a capture
from our own devices.
"""
from __future__ import annotations

import pytest

from gencompress.benchmarks.tegrastats import energy_per_image_j, mean_power_w, parse_line, parse_nvpmodel

ORIN_NANO_JP6 = ("11-25-2026 03:10:02 RAM 3120/7620MB (lfb 9x4MB) SWAP 0/3810MB (cached 0MB) "
                 "CPU [3%@1510,1%@1510,0%@1510,2%@1510,0%@1510,0%@1510] EMC_FREQ 12%@2133 GR3D_FREQ 87%@[624] "
                 "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@51.2C soc2@49.5C soc0@50.1C gpu@52.9C "
                 "tj@52.9C soc1@49.8C VDD_IN 7412mW/6120mW VDD_CPU_GPU_CV 3088mW/2210mW VDD_SOC 1960mW/1803mW")
AGX_ORIN_JP6 = ("11-25-2026 03:11:40 RAM 9321/62841MB (lfb 210x4MB) SWAP 0/31420MB (cached 0MB) "
                "CPU [5%@2201,2%@2201,0%@2201,1%@2201,0%@2201,0%@2201,0%@2201,0%@2201,4%@2201,0%@2201,0%@2201,0%@2201] "
                "EMC_FREQ 20%@3199 GR3D_FREQ 92%@[1300,1300] VIC_FREQ 729 APE 174 CV0@-256C CPU@48.1C Tboard@35C "
                "SOC2@45.2C Tdiode@37.5C SOC0@46.0C CV1@-256C GPU@50.3C tj@50.3C SOC1@45.1C CV2@-256C "
                "VDD_GPU_SOC 14210mW/12002mW VDD_CPU_CV 1604mW/1500mW VIN_SYS_5V0 5210mW/5011mW NC 0mW/0mW "
                "VDDQ_VDD2_1V8AO 905mW/880mW NC 0mW/0mW")
XAVIER_NX_JP5 = ("RAM 3011/6851MB (lfb 4x4MB) SWAP 120/3426MB (cached 0MB) CPU [20%@1420,15%@1420,9%@1420,11%@1420,off,off] "
                 "EMC_FREQ 9%@1600 GR3D_FREQ 64%@[1109] VIC_FREQ 115 APE 150 AUX@44.5C CPU@46C thermal@45.2C AO@44C "
                 "GPU@46.5C PMIC@50C VDD_IN 6120mW/5880mW VDD_CPU_GPU_CV 2410mW/2210mW VDD_SOC 1330mW/1310mW")
XAVIER_JP4 = ("RAM 2171/7772MB (lfb 863x4MB) SWAP 0/3886MB (cached 0MB) CPU [2%@1190,1%@1190,0%@1190,0%@1190,off,off] "
              "EMC_FREQ 0% GR3D_FREQ 0% AO@37C GPU@37.5C PMIC@100C AUX@36C CPU@38C thermal@37.2C "
              "VDD_IN 4103/4080 VDD_CPU_GPU_CV 532/530 VDD_SOC 1331/1320")
THOR_JP7 = ("11-25-2026 03:15:00 RAM 20480/125772MB (lfb 12x4MB) SWAP 0/0MB (cached 0MB) "
            "CPU [6%@2601,3%@2601,1%@2601,0%@2601,2%@2601,0%@2601,0%@2601,0%@2601,0%@2601,0%@2601,0%@2601,0%@2601,0%@2601,0%@2601] "
            "EMC_FREQ 15%@4266 GR3D_FREQ 78% cpu@47.5C tj@51.0C soc012@46.2C gpu@51.0C "
            "VDD_GPU 21050mW/18400mW VDD_CPU_SOC_MSS 9120mW/8800mW VIN_SYS_5V0 6200mW/6100mW VIN 43500mW/41020mW")


def test_orin_nano_line():
    s = parse_line(ORIN_NANO_JP6)
    assert s.rails_mw == {"VDD_IN": 7412.0, "VDD_CPU_GPU_CV": 3088.0, "VDD_SOC": 1960.0}
    assert (s.total_rail, s.total_mw) == ("VDD_IN", 7412.0)
    assert (s.ram_used_mb, s.ram_total_mb, s.gpu_util_pct, s.gpu_freq_mhz) == (3120, 7620, 87, [624])
    assert s.temps_c["gpu"] == 52.9


def test_agx_orin_line_sums_rails_without_a_board_input_rail():
    s = parse_line(AGX_ORIN_JP6)
    assert "NC" not in s.rails_mw and "CV0" not in s.temps_c  # unconnected channel, sensor off (-256C)
    assert s.total_rail == "sum of rails"
    assert s.total_mw == 14210 + 1604 + 5210 + 905
    assert s.gpu_freq_mhz == [1300, 1300] and s.gpu_util_pct == 92


def test_xavier_formats_with_and_without_units():
    nx, old = parse_line(XAVIER_NX_JP5), parse_line(XAVIER_JP4)
    assert nx.total_mw == 6120.0 and nx.gpu_freq_mhz == [1109]
    assert old.rails_mw == {"VDD_IN": 4103.0, "VDD_CPU_GPU_CV": 532.0, "VDD_SOC": 1331.0}
    assert old.gpu_util_pct == 0 and old.gpu_freq_mhz == []


def test_thor_line_uses_board_input():
    s = parse_line(THOR_JP7)
    assert (s.total_rail, s.total_mw) == ("VIN", 43500.0)
    assert s.gpu_util_pct == 78 and s.ram_total_mb == 125772


def test_energy_per_image_from_mean_power():
    samples = [parse_line(ORIN_NANO_JP6), parse_line(XAVIER_NX_JP5)]  # 7.412 W and 6.120 W
    assert mean_power_w(samples) == pytest.approx((7.412 + 6.120) / 2)
    # 2 s at 6.766 W for 100 images -> 0.13532 J per image
    assert energy_per_image_j(samples, 2.0, 100) == pytest.approx(6.766 * 2.0 / 100)
    assert energy_per_image_j([], 1.0, 10) is None


def test_nvpmodel_query_output():
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n") == {"name": "15W", "id": 2}
