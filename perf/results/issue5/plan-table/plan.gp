# ferry-perf plan: misprediction rates and re-sent bytes vs window size (gnuplot perf/results/issue5/plan-table/plan.gp)
set terminal pngcairo size 1200,500
set output 'plan.png'
$d0 << EOD
# periods A(w|c) A(w|r) A(c|w) A(r|w) precopy_resent_MiB planned_resent_MiB
1 0.259264 0.301372 0.940951 0.000355 97392.062 91675.375
2 0.466833 0.304522 0.751117 0.000613 94534.875 82434.125
4 0.615670 0.315498 0.101842 0.000488 76194.000 54330.688
8 0.634672 0.339578 0.005962 0.000026 40089.625 27981.188
16 0.637019 0.424303 0.000732 0.000000 20153.750 14012.312
EOD
$d1 << EOD
# periods A(w|c) A(w|r) A(c|w) A(r|w) precopy_resent_MiB planned_resent_MiB
1 0.068293 0.082877 0.712580 0.000731 97392.062 9979.625
2 0.087116 0.084664 0.420910 0.000650 94534.875 6359.000
4 0.108802 0.088046 0.051799 0.000269 76194.000 3966.562
8 0.125213 0.091168 0.005743 0.000058 40089.625 2286.188
16 0.113485 0.092006 0.001178 0.000000 20153.750 1020.125
EOD
set multiplot layout 1,2 title 'LU of order 3072, 16-page blocks, sample period 40 ms (vm)'
set logscale x 2
set grid
set key top left
set xlabel 'window (sample periods of 40 ms)'
set title 'misprediction rates (history 1)'
set ylabel 'rate'
set yrange [0:1]
plot $d0 using 1:2 with linespoints lw 2 title 'A(w|c)', \
     $d0 using 1:3 with linespoints lw 2 title 'A(w|r)', \
     $d0 using 1:4 with linespoints lw 2 title 'A(c|w)', \
     $d0 using 1:5 with linespoints lw 2 title 'A(r|w)'
set title 're-sent bytes (each window one push round)'
set ylabel 'MiB re-sent'
set yrange [0:*]
set key top right
plot $d0 using 1:6 with linespoints lw 2 title 'pre-copy', \
     $d0 using 1:7 with linespoints lw 2 title 'planned, history 1 (seed)', \
     $d1 using 1:7 with linespoints lw 2 title 'planned, history 4'
unset multiplot
