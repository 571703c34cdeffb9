#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Plots of a bench run: scale.png (per-MR memory, lookup time, registration
# rate against the number of MRs) and churn.png (transfers/s relative to no
# changes against layout changes per second). Needs gnuplot (gnuplot-nox).
dir=${1:?usage: plot.sh RESULTS_DIR}
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not installed (scripts/setup.sh installs gnuplot-nox); no plots"; exit 0; }
if [ -s "$dir/scale.dat" ]; then
	gnuplot <<GP
set terminal pngcairo size 1500,450 noenhanced
set output "$dir/scale.png"
set multiplot layout 1,3 title "mrlease scale (mock registrar, 4 KiB MRs)"
set logscale x
set xrange [500:2000000]
set xlabel "MRs"
set grid
set key top left
set title "heap bytes per MR"
set yrange [0:*]
plot "$dir/scale.dat" using 1:2 with linespoints title "anonymous", "" using 1:3 with linespoints title "ext4 file", 256 with lines dashtype 2 title "target 256"
set title "event -> MR lookup (ns, random point query)"
plot "$dir/scale.dat" using 1:6 with linespoints title "VA index", "" using 1:7 with linespoints title "file-offset index", 1000 with lines dashtype 2 title "target 1 us"
set title "registrations per second"
plot "$dir/scale.dat" using 1:4 with linespoints title "anonymous", "" using 1:5 with linespoints title "ext4 file"
unset multiplot
GP
	echo "wrote $dir/scale.png"
fi
if [ -s "$dir/churn.dat" ]; then
	gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$dir/churn.png"
set title "verified transfers/s under layout changes, relative to none"
set logscale x
set xlabel "layout changes per second (asked; achieved in labels)"
set ylabel "transfers/s ratio"
set yrange [0:*]
set xrange [5:2000]
set grid
plot "$dir/churn.dat" using 1:4 with linespoints title "ratio", "" using 1:4:(sprintf("%.0f/s", \$2)) with labels offset 0,1 notitle, 1 with lines dashtype 2 title "no changes"
GP
	echo "wrote $dir/churn.png"
fi
