set datafile separator ","
set terminal pngcairo size 900,600
set key top left
# migrate.csv columns: 1 mem_mib, 2 used_pct, 3 rate, 4 pattern, 5 mode_name (full fctrans planned
#   postcopy), 6 vm_id, 7 engine mode, 8 ok, 9 budget_bytes, 10 subhosts, 11 elapsed_ms, 12 total_ms,
#   13 downtime_ms, 14 rounds, 15 pages_total, 16 pages_sent, 17 pages_skipped_unused, 18 pages_resent,
#   19 pages_to_subhosts, 20 bytes_sent, 21 postcopy_faults, 22 dst_pages_sent, 23 dst_pages_to_subhosts,
#   24 dst_bytes_sent, 25 dst_downtime_ms, 26 pages_moved
# mode-MODE.dat: the finished rows of one mode, by used share.
modes = "full fctrans planned postcopy"
set output "migrate-time.png"
set title "split migration: time vs used memory (finished migrations)"
# x: the --used share the boot pattern touches; at the migration's start the guest may not have
# touched all of it yet (pages_total - pages_skipped_unused in the CSV is what was in use)
set xlabel "used memory (--used, % of guest RAM)"
set ylabel "migration time, start to done (s)"
plot for [m in modes] "mode-".m.".dat" using 2:($11/1000) with linespoints title m
set output "migrate-downtime.png"
set title "split migration: downtime vs used memory"
set ylabel "downtime (ms)"
plot for [m in modes] "mode-".m.".dat" using 2:13 with linespoints title m
set output "migrate-bytes.png"
set title "page data moved (pages moved x 4 KiB), finished migrations"
set ylabel "MiB"
plot for [m in modes] "mode-".m.".dat" using 2:($26*4096/1048576) with linespoints title m
set output "migrate-bytes-bars.png"
set title "bytes per mode (every run): page data moved and re-sent"
set key top right
set xlabel "mode / used share"
set style data histograms
set style histogram clustered
set style fill solid 0.8
set xtics rotate by -30
set ylabel "MiB"
plot "migrate.csv" using ($26*4096/1048576):xtic(stringcolumn(5)."/".stringcolumn(2)."%") every ::1 title "moved", \
     "" using ($18*4096/1048576) every ::1 title "re-sent", \
     "" using ($20/1048576) every ::1 title "bytes sent by the source"
